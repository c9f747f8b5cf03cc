"""Per-task callback tokens: the provider signs nothing, so the URL we give it carries a secret.

The token is an HMAC of the task id under a key from Secrets Manager: unguessable, checkable
without a table read, and useless for any other task.
"""

import base64
import hashlib
import hmac

_PURPOSE = b"sora-relay/callback/v1:"


def callback_token(task_id: str, key: str) -> str:
    mac = hmac.new(key.encode(), _PURPOSE + task_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_matches(task_id: str, token: str | None, key: str) -> bool:
    if not token:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a stranger chooses the token).
    return hmac.compare_digest(callback_token(task_id, key).encode(), token.encode("utf-8", "replace"))
