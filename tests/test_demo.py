from pyro_sparse import demo


def test_demo_prints_anchors_and_scores(capsys):
    assert demo.main(["--n", "300", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "recovered anchors per factor" in out
    assert "support recovery after one-to-one matching" in out
    assert "held-out reconstruction MSE" in out
