# SPDX-License-Identifier: GPL-3.0-or-later
import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput
from ansible_collections.lockbox.fleet.plugins.module_utils._rules.size import format_size, parse_size, round_up

GIB = 1024 ** 3


@pytest.mark.parametrize("text, expected", [
    ("10G", 10 * GIB), ("10g", 10 * GIB), ("10GiB", 10 * GIB), ("10 GiB", 10 * GIB),
    ("1.5G", 1610612736), ("512M", 512 * 1024 ** 2), ("512MiB", 512 * 1024 ** 2),
    ("1KB", 1000), ("1kb", 1000), ("2TB", 2 * 10 ** 12), ("1T", 1024 ** 4),
    ("4096", 4096), ("4096B", 4096), (4096, 4096), ("  3G ", 3 * GIB),
])
def test_parse_size_accepts_operator_forms(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "", "G", "10X", "10 XB", "ten", "10GG", "10iB", "-1G", "1e9", "0x10", "10G;rm", "1,5G", "10\0G", True,
])
def test_parse_size_rejects_garbage_with_a_clear_message(text):
    with pytest.raises(InvalidInput) as err:
        parse_size(text)
    assert "size" in err.value.msg


@pytest.mark.parametrize("value", ["0", 0, "0G", "0.0001K"])
def test_parse_size_rejects_zero(value):
    with pytest.raises(InvalidInput, match="greater than zero"):
        parse_size(value)


def test_round_up_to_whole_mib():
    assert round_up(1) == 1024 ** 2
    assert round_up(1024 ** 2) == 1024 ** 2
    assert round_up(1024 ** 2 + 1) == 2 * 1024 ** 2


@pytest.mark.parametrize("number, text", [(512, "512 B"), (1536, "1.5 KiB"), (GIB, "1 GiB"), (1610612736, "1.5 GiB")])
def test_format_size(number, text):
    assert format_size(number) == text
