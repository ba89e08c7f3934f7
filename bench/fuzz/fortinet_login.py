"""The `/remote/logincheck` body (`fortinet.site.login_form`) and the code field (`fortinet.login.read_code`).

Contract: any bytes give a form of text fields; the code field reads as a channel to send a code
by (nothing else then) or as a code without surrounding white space, typed by the user, plus the
"trust" flag; the fields we echo into the comma-separated answer hold no comma or line break.
"""

from __future__ import annotations

import atheris
from fuzzlib import main, require

with atheris.instrument_imports(include=["campusvpn"]):
    from campusvpn.fortinet.login import SEND_WORDS, _field, read_code
    from campusvpn.fortinet.site import login_form


def check(data: bytes) -> None:
    form = login_form(data)
    require(all(isinstance(k, str) and isinstance(v, str) for k, v in form.items()), "a field is not text")
    typed = [form.get("code", ""), form.get("username", ""), data.decode("utf-8", "replace")]
    for text in typed:
        answer = read_code(text)
        if answer.send is not None:
            require(answer.send in SEND_WORDS.values(), f"unknown channel {answer.send!r}")
            require(answer.code == "" and not answer.trust, "a send word also carries a code")
        else:
            require(answer.code == answer.code.strip(), "the code keeps surrounding white space")
            require(len(answer.code) <= len(text), "the code is longer than what was typed")
            require(answer.trust or answer.code == text.strip(), "a code without trust is not what was typed")
        field = _field(text)
        require("," not in field and "\n" not in field and "\r" not in field, "a separator reached the answer")


if __name__ == "__main__":
    main(check)
