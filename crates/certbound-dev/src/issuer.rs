//! A local HTTPS issuer for tests and the example: discovery + JWKS, with controllable failures. (being written)
