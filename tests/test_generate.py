"""Final-answer extraction and exact match on hand-written cases."""

from __future__ import annotations

import pytest

from fedsa.tasks.generate import extract_answer, is_correct, normalize_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
        ("#### 72", "72"),
        ("The answer is 1,234.", "1234"),
        ("So he made a profit of $70,000.", "70000"),
        ("It dropped 3 degrees to -5 degrees.", "-5"),
        ("#### -12", "-12"),
        ("Each costs 2.50 dollars, total 7.50", "7.5"),
        ("#### 0.25\nThe answer is 3", "0.25"),  # the #### marker wins over a later number
        ("first 3 then #### 4 then #### 5", "5"),  # the last marker counts
        ("#### no number here, but 7 appears later", "7"),
        ("The result is 12.00.", "12"),
        ("I do not know.", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_normalize_number() -> None:
    assert normalize_number("1,234.50") == "1234.5"
    assert normalize_number("$5") == "5"
    assert normalize_number("007") == "7"
    assert normalize_number("1e3") == "1000"
    assert normalize_number("abc") is None


def test_is_correct() -> None:
    assert is_correct("so 3 + 4 = 7\n#### 7", "7")
    assert not is_correct("so 3 + 4 = 8\n#### 8", "7")
    assert not is_correct("I cannot say", "7")
    assert is_correct("The answer is 1,000.", "1000")
    # non-numeric references compare the whitespace-normalised text
    assert is_correct("  Paris \n", "Paris")
    assert not is_correct("Lyon", "Paris")
