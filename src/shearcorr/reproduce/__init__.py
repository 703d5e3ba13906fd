"""``shearcorr reproduce``: the paper end to end, written up as report.md."""
