"""What ``import pyro_sparse`` costs: the heavy optional libraries load on first use.

Every worker process of ``fit(n_jobs=...)`` and every ``pyro-sparse`` command pays the
package's import time, so scikit-learn, SciPy, pandas, matplotlib and the ArviZ stack are
imported inside the functions that need them.
"""

import subprocess
import sys

LAZY = ("sklearn", "scipy", "pandas", "matplotlib", "arviz_base", "arviz_stats", "xarray")


def test_import_leaves_heavy_libraries_unloaded():
    code = ("import sys, pyro_sparse; "
            f"print(','.join(m for m in {LAZY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"import pyro_sparse loaded {out}"


def test_lazy_imports_still_work():
    import numpy as np

    import pyro_sparse as ps

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2))
    mixed = z @ np.array([[1.0, 1.0], [1.0, -1.0]])
    assert ps.diagnostics.mig(z, z)["mig"] > ps.diagnostics.mig(mixed, z)["mig"] + 0.3
    assert list(ps.diagnostics.match_factors(z, z[:, ::-1])) == [1, 0]


def test_plots_attribute_loads_on_first_use():
    code = ("import sys, pyro_sparse as ps; before = 'pyro_sparse.plots' in sys.modules; "
            "f = ps.plots.plot_loadings; print(before, 'pyro_sparse.plots' in sys.modules, "
            "callable(f))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True"]
    import pytest

    import pyro_sparse as ps

    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        _ = ps.no_such_thing
