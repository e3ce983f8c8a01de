"""What a browser may see of an error: its text with every absolute server path cut down to the file's name.

The service's errors name the file at fault (useful in a terminal); a visitor needs the name, not where the
server keeps it. Tracebacks never reach here: unexpected exceptions stay on the server (Gradio's
show_error is off by default), only the text of errors raised on purpose is shown.
"""
from __future__ import annotations

import re

# An absolute POSIX path ("/srv/models/x/config.json", "/etc/passwd"), a home-relative one ("~/x/y") or a
# Windows one ("C:\\models\\x"): a root, then at least one directory part. Group "name" is the last part.
# A root with no directory part is left alone: its last part is all it says ("/etc" would only lose its slash),
# and it is what a visitor's "</b>" (an HTML end tag), "a / b" or "<br />" holds, which must be echoed as typed.
SERVER_PATH = re.compile(r"""(?<![\w.~/\\:-])(?:~|[A-Za-z]:)?[/\\](?:[^\s'"/\\:,;()\[\]<>|]+[/\\])+"""
                         r"""(?P<name>[^\s'"/\\:,;()\[\]<>|]*)""")


def strip_paths(text: str) -> str:
    """`text` with each absolute path replaced by its last part ("/a/b/config.json" -> "config.json")."""
    return SERVER_PATH.sub(lambda match: match.group("name") or "(server path)", text)


def public_message(err: BaseException) -> str:
    """The error's text for a browser: no server paths, never empty, starting with a capital letter."""
    text = strip_paths(str(err)).strip() or type(err).__name__
    return text[0].upper() + text[1:]
