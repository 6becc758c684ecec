#pragma once
// Test-only keys (generated with `openssl genpkey`); never use them outside tests.
#include <string_view>
namespace wsgate::test_keys {
inline constexpr std::string_view rsa_pem = R"PEM(-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDJOoU05+Z7Zci1
fhVeCY8QmkmVX/JpE/6iP9RsFmM2Vv33Cb69cnie54OWI4WpFu6LCbEyU4PYOxqr
31mNsGf3s4skrdYV6S4Uc5ZksYh6jIgC1zmDQamFlOchNFcBhAO9y/1O43udlGU6
AUPTLCkPwH6FC+43nKUg0cGVIY5LXdCpd4JW03FCZMwpJBk9V4eSHtgu8/+Ae5zA
3kf5YeASykg0aFyBU3CgjGoeyznu6EZly6pvRY4hTm86PXzA+yk8M+06ix04w8T9
mfEQBntfXOm3yfbzVmBm++6GFOPTgXcP+1dpdjSFTSgdNiM4nSoHmNcTEwXszsxp
GvCzi0H5AgMBAAECggEAFeuFBS1ZwwlkYrjYVQUPi4xzBY2NF3sxGrV/S0LpDctO
IPHz0Ck/EHhBskIuViwEUir9HXFRhGVz01MiKzgTKz1oo9c34e0jsuCgelmId2kF
i+GsBytI7x84SjqsW6Lo0Wz+K/DFz3WRzU7D96Xw1yFt5spU6cPrjPascrVUDct5
8L3E/MOQgvgKQgTISP54QPSBRJlEi5FOjmsWd47Oojl38eqFhuMjJGXjYsR7YSAW
Bsm8E3k5ZB7JJFNVg6sS53BM/1V1wZAh/ZkRRaN3yuI6eKYywmP2plrCYPfM89So
8Z6URZXylBhDLyT8W0IIq4VcHVjn+K9iwzZmUvEZ3QKBgQDn3oPCXZI+9NHgYYwL
n2NQdRATohF5BqLJNvd0xfOBSeY4ftGdS6Z1yJYrqww9UQZ2AvXSilMltb49v0MU
SGXgOYNKf2UJFbyekRvlgDHCLBF21QaQf1kq0fpC5rNaABDyMbS//nlniqnnggNj
X2frkVDSdoj42bds6vguxWNV7wKBgQDeK6zdnDc3vAltlqT8zpaKr7sr7d1/9JlQ
oEE7BsbBuDZsm24+7RKRgWVzm6mJoTx2BmYAuw1qM2ax0SrAk9CvAxO8PXsrcdCf
vuUlP2hgeMDpTDzOLFDwgWmi4fclgTEp4g7es07XThaQ6qgQM1gscNRid0fX37pW
eHbUGUeOlwKBgDsAx5ydPQriN8oWaJHIlHgz4cxtMG8Qvjnfz+aaPNXInVoBA4w4
ZPqR+YzRMQMlbDR5ml5iLrho4ClMU2CE78+4Mu2xL1+5dU8Qc/3Zuk/D8QnBObNp
hKI93qZJmJgtbiKDfZBhzDkJ8yRjVENkUsiCKQP1f/N7S47e2BrmxdlnAoGBAIC9
/GE6+gBxFWGMzzS0HiZlqOfO4fEY85L2Gnay+ZAeSGNtOlh6lqz8t6ZjiL35Ugju
skMwIZjuCk92bvjDb0VLWi9VzT8iqAs52p1X/gsRTnCivgWXRpvn0igSG15/W9by
aT2B2GkJligJ4rPonOq7w0b/6gDdY6RiEDHeKEonAoGAdJ/Dcj8jIT1DZxRu2Xe4
+cP7hSYjwIjrbhVr1oHpjafWNhYFGkaOPQvoDCe6cNRocuaURnyErf0PQscC4Dy6
HGw5OeM75T5XkL4c0T811a1AkaL2CQ5gYbWDvhbz20v35x+tJ0uXrLb3zhQ/0vuY
TEp93ZTBQDkFzNTMxA0g2I0=
-----END PRIVATE KEY-----
)PEM";
inline constexpr std::string_view rsa_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyTqFNOfme2XItX4VXgmP
EJpJlV/yaRP+oj/UbBZjNlb99wm+vXJ4nueDliOFqRbuiwmxMlOD2Dsaq99ZjbBn
97OLJK3WFekuFHOWZLGIeoyIAtc5g0GphZTnITRXAYQDvcv9TuN7nZRlOgFD0ywp
D8B+hQvuN5ylINHBlSGOS13QqXeCVtNxQmTMKSQZPVeHkh7YLvP/gHucwN5H+WHg
EspINGhcgVNwoIxqHss57uhGZcuqb0WOIU5vOj18wPspPDPtOosdOMPE/ZnxEAZ7
X1zpt8n281ZgZvvuhhTj04F3D/tXaXY0hU0oHTYjOJ0qB5jXExMF7M7MaRrws4tB
+QIDAQAB
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view rsa1024_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCa3qMHIcVJnLQWBWV/ouA4uyiQ
CUqeJG05HnXkfAClnwotUPU4dD5WvkTFC3uUzKrTqJRc7G2Una4PGAdsnp69cNNH
xfSegJu95dKZIqOJo0axxOGB69MRGCw2jPpO2deqLz+KFBn1t/y0/bSjfKpZM3wq
ctS9MlS1GMofIpJI3wIDAQAB
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view ec_pem = R"PEM(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS8A7jkfVpsX3yfpI
jWloV+O8fk9KgPgdMs/GuksKhNShRANCAAQ8eEcOyWu8GgVj5ZSNnxDzDcX+OJT8
wunOCtxQ3z7arJj+Po8YZxXH/IU8DNaCZsCfHRxz/Q4Smue4m3qOREGt
-----END PRIVATE KEY-----
)PEM";
inline constexpr std::string_view ec_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPHhHDslrvBoFY+WUjZ8Q8w3F/jiU
/MLpzgrcUN8+2qyY/j6PGGcVx/yFPAzWgmbAnx0cc/0OEprnuJt6jkRBrQ==
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view ec384_pem = R"PEM(-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDAJ1okSjUO1zSXWs/vB
EhZUTIVbxd5BvJSvEryRSHY4/WBKOmKwPsMH4aKbkfWTgtyhZANiAATvzY0QOwMI
DZ1V9uq/bOeeJUtk6HXro4C7BNHEaAktMUO7+RHj3q6QGaAFZou681Kp5KQuo5Up
Pr/IXWi5quOvUZEyLBQrg2OQtvWAyEiJAAwkkLxmgmzgdIGSvWvPuaE=
-----END PRIVATE KEY-----
)PEM";
inline constexpr std::string_view ec384_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE782NEDsDCA2dVfbqv2znniVLZOh166OA
uwTRxGgJLTFDu/kR496ukBmgBWaLuvNSqeSkLqOVKT6/yF1ouarjr1GRMiwUK4Nj
kLb1gMhIiQAMJJC8ZoJs4HSBkr1rz7mh
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view k1_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAElWHulJ5nT2rPpNCOwRP5jmqTSWILmBg6
4CmLAH9qgKe/T25+YOTunCEJfn1vynyDHWCo+m9kPiy6eiggrFRpCg==
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view ec521_pem = R"PEM(-----BEGIN PRIVATE KEY-----
MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIBJf/S0CGpsXSXK18o
Ia2hMLysVPO6gjCUB7hL6rDTBBXUCK2pdG6gHB+lyJDvtf5+Mimw7BHpyeeu6p+O
dR1FDVGhgYkDgYYABAGfpsGTtDVGLKyHjRgmH0oG8kV/sM1IMXAJoTz4RrGltEcV
YDb4TtJr0vwhp/+tQXOesAoeGzGBJrKsQPM66GPdhQBmCbe68NRy+ebRj+3nFXq/
rCeOwPaHRFJBapKgqNqh0dp5isUfC1xKOLsMYt2knKVlcJ6/+UUfGxqbMJ4zNWLJ
qw==
-----END PRIVATE KEY-----
)PEM";
inline constexpr std::string_view ec521_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBn6bBk7Q1Riysh40YJh9KBvJFf7DN
SDFwCaE8+EaxpbRHFWA2+E7Sa9L8Iaf/rUFznrAKHhsxgSayrEDzOuhj3YUAZgm3
uvDUcvnm0Y/t5xV6v6wnjsD2h0RSQWqSoKjaodHaeYrFHwtcSji7DGLdpJylZXCe
v/lFHxsamzCeMzViyas=
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view ed25519_pem = R"PEM(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIELCtZB1gqAJQHcsS4zcszC9qrh9iNmX+PxPYyk4pm2Q
-----END PRIVATE KEY-----
)PEM";
inline constexpr std::string_view ed25519_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEARfBRGY+6MFTQr4JiGJoERQeb6K3z1ujuwPPHIhk8wTM=
-----END PUBLIC KEY-----
)PEM";
inline constexpr std::string_view ed448_pub = R"PEM(-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoA0abXUFxNNghxmoKnRN4eqAf5bZRU0Mex62ISUUhfHfe6Ynv9
Mm6ZBXObwl9nVMQEVnZL83Vak8CA
-----END PUBLIC KEY-----
)PEM";
}  // namespace wsgate::test_keys
