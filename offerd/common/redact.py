"""Keep secrets out of what offerd shows: flags, state documents and log lines.

Two kinds of secret reach those places. A URL can carry a password in its
user-info part (``zk://user:pass@host:2181/offerd`` is how ZooKeeper digest
credentials are given); and a flag can hold a secret outright (its name says
so: ``*secret*``, ``*password*``, ``*token*``). Paths to credential and key
files are not secrets (the files are protected by their mode) and stay
visible, so an operator can still see which file a daemon uses.
"""

from __future__ import annotations

import json
import re

MASK = "******"

# scheme://user:password@ — the password runs to the last '@' before the host,
# never across whitespace or the '/' that starts the path (where ZooKeeper URLs
# end their user-info too), so a password that holds '@' or ':' is hidden whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@]*):(?P<password>[^\s/]*)@")

# Flag names whose value is itself a secret; a name ending in _file, _path or
# _dir holds where a secret is (e.g. --mesos_authentication_secret_file), not it.
_SECRET_NAME = re.compile(r"secret|passw(or)?d|token", re.IGNORECASE)
_PATH_NAME = re.compile(r"_(file|path|dir)$", re.IGNORECASE)


def redact_url(text):
    """`text` with the password of every ``scheme://user:password@`` in it masked.

    Anything that is not a string is returned as it is, so callers can pass
    flag values of any type.
    """
    if not isinstance(text, str) or "://" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name or "")) and not _PATH_NAME.search(name or "")


# Environment variable names that usually hold credentials (AWS_SECRET_ACCESS_KEY,
# DB_PASSWORD, API_KEY, GITHUB_TOKEN, ...): broader than flag names.
_SECRET_VARIABLE = re.compile(r"secret|passw(or)?d|token|key|credential|auth", re.IGNORECASE)


def redact_flags(flags: dict) -> dict:
    """A copy of a flag-name -> value dict that is safe to show.

    Values of secret-named flags become the mask; every other value has its
    URL passwords masked. A JSON-object flag (e.g. --executor_environment_variables)
    is shown as JSON, as Mesos shows it, with credential-like variables masked.
    """
    out = {}
    for name, value in flags.items():
        if is_secret_name(str(name)) and value not in (None, ""):
            out[name] = MASK
        elif isinstance(value, dict):
            out[name] = json.dumps({key: MASK if _SECRET_VARIABLE.search(str(key)) else redact_url(item)
                                    for key, item in value.items()}, sort_keys=True)
        else:
            out[name] = redact_url(value)
    return out
