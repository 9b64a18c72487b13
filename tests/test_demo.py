from pyro_sparse import demo


def test_demo_prints_anchors_and_scores(capsys):
    assert demo.main(["--n", "300", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("recovered anchors per factor") == 2   # default and refined fits
    assert out.count("support recovery after one-to-one matching") == 2
    assert "refine_support=True" in out
    assert "held-out reconstruction MSE: Sparse VAE" in out and "refined" in out


def test_demo_without_the_refined_fit(capsys):
    assert demo.main(["--n", "300", "--epochs", "2", "--no-refine"]) == 0
    out = capsys.readouterr().out
    assert out.count("recovered anchors per factor") == 1
    assert "refined" not in out
