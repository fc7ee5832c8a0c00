"""Raw records holding several lines (edxstream.core.frames): what the shipper writes and the
stream app reads back."""

from __future__ import annotations

import pytest

from edxstream.core import frames


def test_a_record_without_offsets_is_one_line():
    assert frames.split(b'{"a": 1}', 120, None) == [(120, b'{"a": 1}')]
    assert frames.split(b'{"a": 1}', None, None) == [(None, b'{"a": 1}')]  # kcat -l: no headers


def test_frame_lines_come_back_at_their_file_offsets():
    file = b'{"u": "a"}\n{"u": "b"}\n\n{"u": "a", "x": 1}\n{"u": "c"}\n'
    # the lines of learner a only (another partition took b and c), as the shipper frames them
    wanted = [(0, b'{"u": "a"}'), (23, b'{"u": "a", "x": 1}')]
    offsets = [o for o, _ in wanted]
    value = b"\n".join(line for _, line in wanted)
    assert frames.split(value, offsets[0], frames.offsets_header(offsets)) == wanted
    for off, line in wanted:
        assert file[off : off + len(line)] == line


@pytest.mark.parametrize(
    "value, offset, more",
    [
        (b"a\nb\nc", 0, b"2"),  # three lines, one step
        (b"a\nb", 0, b"2,2"),  # two lines, two steps
        (b"a\nb", None, b"2"),  # no first offset
        (b"a\nb", 0, b"two"),
    ],
)
def test_a_frame_whose_offsets_do_not_match_is_an_error(value, offset, more):
    with pytest.raises(frames.FrameError):
        frames.split(value, offset, more)
