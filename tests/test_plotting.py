import matplotlib

from cartpole_dqn.plotting import pyplot, save_png

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_figure_is_written_whole_as_png_and_closed(tmp_path):
    plt = pyplot()
    assert matplotlib.get_backend().lower() == "agg"             # files only: no window, no display needed
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_png(fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
    assert list(tmp_path.iterdir()) == [tmp_path / "a.png"]       # no temporary file left
    assert not plt.fignum_exists(fig.number)
