"""The redactor masks a secret however the text carrying it wrote its characters: a URL that
re-encoded some of them and not others, a JSON body that escaped ``/``, a bytes repr, HTML."""

import json
import re
from urllib.parse import quote, quote_plus

import httpx
import pytest

from etl_assets.sources.secrets import Redactor

TOKENS = ["ab/c+defGHIJKLMN==", "Tok/en+Secret=Value123", "tok-3f9a+Q7/z=c0ffee&x", "pässwörd-ünï😀-tail"]


@pytest.mark.parametrize("token", TOKENS)
def test_every_way_a_token_is_written_is_masked(token):
    redact = Redactor([token])
    link = str(httpx.URL("http://source/linked", params={"n": 4, "t": token}))  # '/' encoded, '+' kept
    carried = {
        f"next {link}": "next http://source/linked?n=4&t=***",
        f"x={quote(token, safe='')}.": "x=***.",
        "x=" + re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(token, safe="")) + ".": "x=***.",
        f"x={quote_plus(token, safe='')}.": "x=***.",
        json.dumps({"error": token}): '{"error": "***"}',
        json.dumps({"error": token}, ensure_ascii=False).replace("/", "\\/"): '{"error": "***"}',
        f"body {token.encode()!r}": "body b'***'",
        # a cut-off JSON body shown as a repr: its escapes' backslashes doubled
        f"starting {json.dumps(token).replace('/', chr(92) + '/')!r}": "starting '\"***\"'",
        f"<p>{token.replace('&', '&amp;').replace('/', '&#47;')}</p>": "<p>***</p>",
    }
    for text, expected in carried.items():
        assert redact(text) == expected, text


def test_a_token_cut_short_is_masked_from_its_first_eight_characters():
    redact = Redactor(["Tok/en+Secret=Value123"])
    assert redact("starting 'bad credentials: Tok\\/en+Secr'") == "starting 'bad credentials: ***'"
    assert redact("t=Tok%2Fen+Se and t=Tok%2Fe") == "t=*** and t=Tok%2Fe"


def test_short_values_and_other_text_are_left_alone():
    redact = Redactor(["abc", "s3cr3t-value"])
    assert redact("abc s3cr3t-valu s3cr3t-value") == "abc *** ***"
    assert redact("nothing here") == "nothing here"
    assert Redactor(["key1"])("key1 key12 xkey1") == "*** ***2 x***"
