import pytest

from campusvpn.core.usernames import InvalidUsername, UsernameRule

RULE = UsernameRule(r"^[0-9]{10}$", ("example.ac.jp", "st.example.ac.jp"), "10 digits, like 1234567890")


@pytest.mark.parametrize(
    "typed",
    [
        "1234567890",
        " 1234567890 ",
        "１２３４５６７８９０",
        "１２３４５６７８９０@example.ac.jp ",
        "1234567890@EXAMPLE.AC.JP",
        "1234567890@st.example.ac.jp",
        "123 456 7890",
        "1234567890\u200b",  # a zero-width space pasted from a web page
        "１２３４５６７８９０＠ｅｘａｍｐｌｅ．ａｃ．ｊｐ",  # all full-width, even the @ and the domain
    ],
)
def test_every_typed_form_means_the_same_name(typed: str) -> None:
    assert RULE.normalise(typed) == "1234567890"


@pytest.mark.parametrize("typed", ["123456789", "12345678901", "abcdefghij", "", "1234567890@"])
def test_invalid_names_say_what_a_valid_name_looks_like(typed: str) -> None:
    with pytest.raises(InvalidUsername, match="10 digits, like 1234567890"):
        RULE.normalise(typed)


def test_a_foreign_realm_is_refused_not_silently_dropped() -> None:
    with pytest.raises(InvalidUsername, match="@example.ac.jp or @st.example.ac.jp"):
        RULE.normalise("1234567890@gmail.com")
