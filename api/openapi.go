package api

import _ "embed"

// OpenAPI is the API's OpenAPI 3 description (openapi.json), served at
// PathOpenAPI. TestOpenAPI keeps it in step with this package: every path,
// problem code and body field.
//
//go:embed openapi.json
var OpenAPI []byte
