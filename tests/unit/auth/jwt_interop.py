"""Cross-implementation checks between wsgate and PyJWT (with python3-cryptography).

  jwt_interop.py mint DIR      generate fresh HMAC, RSA, P-256, P-521 and Ed25519 keys, write the
                               verification keys and PyJWT-minted tokens (HS256, RS256, ES256,
                               PS256/384/512, ES512, EdDSA) to DIR (secret.bin, rsa.pub, ec.pub,
                               ec521.pub, ed25519.pub, tokens.json)
  jwt_interop.py verify ALG KEYFILE TOKENFILE SUB AUD
                               verify a token with PyJWT; exit 0 if valid and sub matches, 1 otherwise
"""
import base64
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pss256_token(key, claims, salt_length, kid):
    """A PS256 JWS built by hand, so the PSS salt length can differ from RFC 7518's (32)."""
    header = {"alg": "PS256", "typ": "JWT", "kid": kid}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = key.sign(signing_input.encode(),
                   padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length), hashes.SHA256())
    return signing_input + "." + b64url(sig)


def mint(out_dir):
    secret = os.urandom(32)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec521_key = ec.generate_private_key(ec.SECP521R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    now = int(time.time())
    claims = {
        "sub": "py-user", "iss": "pyjwt", "aud": ["other", "wsgate"], "iat": now, "exp": now + 600,
        "sid": "py-session", "nickname": "Py", "permissions": ["read_events"], "nested": {"n": [1, 2]},
    }
    tokens = {
        "HS256": jwt.encode(claims, secret, algorithm="HS256"),
        "RS256": jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "py-rsa"}),
        "ES256": jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "py-ec"}),
        "HS256-expired": jwt.encode(dict(claims, exp=now - 3600, iat=now - 7200), secret, algorithm="HS256"),
        "PS256": jwt.encode(claims, rsa_key, algorithm="PS256", headers={"kid": "py-ps256"}),
        "PS384": jwt.encode(claims, rsa_key, algorithm="PS384", headers={"kid": "py-ps384"}),
        "PS512": jwt.encode(claims, rsa_key, algorithm="PS512", headers={"kid": "py-ps512"}),
        "ES512": jwt.encode(claims, ec521_key, algorithm="ES512", headers={"kid": "py-ec521"}),
        "EdDSA": jwt.encode(claims, ed_key, algorithm="EdDSA", headers={"kid": "py-ed25519"}),
        "PS256-salt32": pss256_token(rsa_key, claims, 32, "py-ps256"),
        "PS256-salt0": pss256_token(rsa_key, claims, 0, "py-ps256"),
    }
    with open(os.path.join(out_dir, "secret.bin"), "wb") as f:
        f.write(secret)
    with open(os.path.join(out_dir, "rsa.pub"), "wb") as f:
        f.write(pem_public(rsa_key))
    with open(os.path.join(out_dir, "ec.pub"), "wb") as f:
        f.write(pem_public(ec_key))
    with open(os.path.join(out_dir, "ec521.pub"), "wb") as f:
        f.write(pem_public(ec521_key))
    with open(os.path.join(out_dir, "ed25519.pub"), "wb") as f:
        f.write(pem_public(ed_key))
    with open(os.path.join(out_dir, "tokens.json"), "w") as f:
        json.dump(tokens, f)
    return 0


def verify(alg, key_file, token_file, sub, aud):
    with open(key_file, "rb") as f:
        key = f.read()
    with open(token_file) as f:
        token = f.read().strip()
    try:
        claims = jwt.decode(token, key, algorithms=[alg], audience=aud, options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as e:
        print("rejected:", type(e).__name__)
        return 1
    return 0 if claims.get("sub") == sub else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "mint":
        sys.exit(mint(sys.argv[2]))
    if len(sys.argv) == 7 and sys.argv[1] == "verify":
        sys.exit(verify(*sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
