// Verify a scanlogin login token (ES256, the default token.algorithm) in your backend,
// with Go's standard library and our public keys alone.
//
//	go run examples/verify-token/verify.go http://127.0.0.1:8080 "$TOKEN"
//
// Prints the token's claims when its signature, issuer, audience and expiry hold; exits 1
// otherwise. A real service fetches /.well-known/jwks.json once and again when a token
// names a kid it does not know (keys are published an hour before they sign). A
// logged-out token still verifies until it expires: ask GET /api/v1/me with it when
// revocation matters.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"
)

type jwk struct {
	Kid, Kty, Crv, Alg, X, Y string
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "invalid token: "+format+"\n", args...)
	os.Exit(1)
}

func b64(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		fail("not base64url: %v", err)
	}
	return b
}

func main() {
	base, token := strings.TrimRight(os.Args[1], "/"), os.Args[2]
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		fail("not a JWS")
	}
	var header struct{ Alg, Kid string }
	if json.Unmarshal(b64(parts[0]), &header) != nil || header.Alg != "ES256" {
		fail("the header must say alg ES256 (never none or HS256)")
	}
	res, err := http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		fail("cannot fetch the keys: %v", err)
	}
	var set struct{ Keys []jwk }
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		fail("unreadable key set: %v", err)
	}
	var key *ecdsa.PublicKey
	for _, k := range set.Keys {
		if k.Kid == header.Kid && k.Kty == "EC" && k.Crv == "P-256" {
			key = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(b64(k.X)), Y: new(big.Int).SetBytes(b64(k.Y))}
		}
	}
	if key == nil {
		fail("no published key %q", header.Kid)
	}
	sig := b64(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		fail("bad signature")
	}
	var claims struct {
		Sub string `json:"sub"`
		Jti string `json:"jti"`
		Iss string `json:"iss"`
		Aud string `json:"aud"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
	if json.Unmarshal(b64(parts[1]), &claims) != nil || claims.Sub == "" || claims.Jti == "" {
		fail("unreadable claims")
	}
	if claims.Iss != "scanlogin" || claims.Aud != "scanlogin" { // token.issuer, token.audience
		fail("wrong issuer or audience")
	}
	if time.Now().Unix() >= claims.Exp {
		fail("expired")
	}
	out, _ := json.Marshal(claims)
	fmt.Println(string(out))
}
