package token

// ES256Signature is es256Signature, for tests that mint their own tokens.
var ES256Signature = es256Signature
