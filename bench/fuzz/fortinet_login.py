"""The `/remote/logincheck` body (`fortinet.site.login_form`) and the code field (`signin.typed_answer`).

Contract: any bytes give a form of text fields; the code field reads as a channel to send a code
by (nothing else then) or as a code without surrounding white space, typed by the user, plus the
"trust" flag; the fields we echo into the comma-separated answer hold no comma or line break.
"""

from __future__ import annotations

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn"]):
    from campusvpn.fortinet.login import _field
    from campusvpn.fortinet.site import login_form
    from campusvpn.signin.engine import Code, SendCode
    from campusvpn.signin.typed_answer import SEND_WORDS, typed_answer


def check(data: bytes) -> None:
    form = login_form(data)
    require(all(isinstance(k, str) and isinstance(v, str) for k, v in form.items()), "a field is not text")
    typed = [form.get("code", ""), form.get("username", ""), data.decode("utf-8", "replace")]
    for text in typed:
        answer = typed_answer(text, device_label="fuzz")
        if isinstance(answer, SendCode):
            require(answer.channel in SEND_WORDS.values(), f"unknown channel {answer.channel!r}")
        elif isinstance(answer, Code):
            require(answer.code == answer.code.strip() and answer.code != "", "the code keeps white space or is empty")
            require(len(answer.code) <= len(text), "the code is longer than what was typed")
            require(answer.trust_device or answer.code == text.strip(), "a code without trust is not what was typed")
        else:
            require(text.strip() == "", "nothing read from a non-empty answer")
        field = _field(text)
        require("," not in field and "\n" not in field and "\r" not in field, "a separator reached the answer")


if __name__ == "__main__":
    main(check)
