package storage

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Identity is who a verified token speaks for. It comes only from a verified
// JWT, never from the URL, query or body. Tenant, App and User follow the id
// rule of validID in tiers.go: 1 to 128 bytes of printable ASCII without '/',
// '\' or '%', and not "." or ".."; a token with any other id is 401
// invalid_token.
type Identity struct {
	Tenant string
	App    string
	// User is empty for a client-credentials token (no sub, or sub equal to
	// the client_id).
	User string
	// Scopes are the scopes the token grants; the effective scopes are these
	// intersected with the app's declared scopes.
	Scopes []string
}

func (id Identity) hasScope(s string) bool {
	for _, g := range id.Scopes {
		if g == s {
			return true
		}
	}
	return false
}

// AuthConfig says how bearer tokens are verified. At least one of Keys and
// Keyfunc must be set.
type AuthConfig struct {
	// Keys verify token signatures. A token whose header names a kid is
	// verified only with the key whose ID equals it exactly; a kid that names
	// no key is refused. A token without a kid is tried against every key of
	// its algorithm's family. Only the algorithms these keys can verify are
	// accepted: HS256/384/512 for secrets, RS256/384/512 and PS256/384/512
	// for RSA, ES256/384/512 by the key's curve, EdDSA for Ed25519.
	Keys []Key

	// Keyfunc, when set, is used instead of Keys, for instance a JWKS key
	// function from github.com/MicahParks/keyfunc/v3. Algorithms must then
	// list the accepted algorithms.
	Keyfunc jwt.Keyfunc
	// Algorithms accepted with Keyfunc, such as []string{"RS256"}. Ignored
	// with Keys. Never "none".
	Algorithms []string

	// Issuer, when set, must equal the token's iss. Default: not checked.
	Issuer string
	// Audience, when set, must be one of the token's aud. Default: not checked.
	Audience string
	// Leeway tolerated on exp and nbf for clock skew. Default 0.
	Leeway time.Duration

	// Claims names the claims that carry the identity. Defaults:
	// tenantId, client_id, sub, scope.
	Claims ClaimNames

	// CacheTTL is how long a verified token is remembered, by the SHA-256
	// of its whole text (signature included), so that the next calls with
	// it skip the signature check: 6-15 us for HS256, 35-80 us for the
	// RS256 and ES256 keys of a JWKS. A remembered token is used only while
	// it is itself valid on the engine's clock (Config.Now): exp and nbf,
	// with Leeway, are checked exactly on every call, as without the
	// cache. It is used for at most CacheTTL after it was verified, and a
	// token that fails verification is never remembered. A token's
	// identity, scopes and expiry cannot change; what CacheTTL delays is a
	// change of keys: a key dropped from a Keyfunc's set (a JWKS rotation)
	// still admits, for at most CacheTTL, the tokens that it verified in
	// that time, as does a Keyfunc that revokes tokens. App lookups are
	// not part of it (see Config.AppCacheTTL). The cache is per engine, at
	// most 10000 tokens, least recently used first out. Default 1s; at
	// most 1m; negative disables the cache.
	CacheTTL time.Duration
}

// Key is one verification key: an HMAC secret or a PEM public key.
type Key struct {
	// ID, when set, is matched exactly against the token's kid header.
	ID string
	// Secret is an HMAC secret of at least 32 bytes.
	Secret []byte
	// PublicKeyPEM is a PEM "PUBLIC KEY" (PKIX: RSA, ECDSA or Ed25519),
	// "RSA PUBLIC KEY" (PKCS#1) or "CERTIFICATE" block.
	PublicKeyPEM []byte
}

// ClaimNames names the JWT claims that carry the identity.
type ClaimNames struct {
	Tenant string // default "tenantId"
	App    string // default "client_id"
	User   string // default "sub"
	Scope  string // default "scope": a space-separated string or an array of strings
}

// maxAuthHeader caps the Authorization header before any parsing.
const maxAuthHeader = 8 << 10

// verifier checks bearer tokens. It is built once by New and never changes
// but for its cache.
type verifier struct {
	keys    []verifyKey
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
	algs    []string // the accepted algorithms
	claims  ClaimNames
	now     func() time.Time
	leeway  time.Duration
	issuer  string // AuthConfig.Issuer
	aud     string // AuthConfig.Audience

	// cache holds verified tokens by the SHA-256 of their text, for
	// cacheTTL (AuthConfig.CacheTTL); nil when disabled.
	cache    *lru.Cache[[sha256.Size]byte, *verifiedToken]
	cacheTTL time.Duration
}

// tokenCacheSize bounds the verified-token cache.
const tokenCacheSize = 10000

// maxTokenCacheTTL caps AuthConfig.CacheTTL.
const maxTokenCacheTTL = time.Minute

// verifiedToken is what the verification of one token found.
type verifiedToken struct {
	id       Identity
	exp, nbf time.Time // the token's exp and nbf (zero: no nbf), as the parser read them
	at       time.Time // when it was verified, on the engine's clock
}

type verifyKey struct {
	id     string
	key    any      // []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	algs   []string // algorithms this key verifies
	family string   // "hmac", "rsa", "ecdsa", "ed25519"
}

func newVerifier(c AuthConfig, now func() time.Time) (*verifier, error) {
	v := &verifier{claims: c.Claims, now: now, leeway: c.Leeway, issuer: c.Issuer, aud: c.Audience}
	switch {
	case c.CacheTTL == 0:
		v.cacheTTL = time.Second
	case c.CacheTTL > maxTokenCacheTTL:
		return nil, errors.New("Auth.CacheTTL must be at most 1m")
	case c.CacheTTL > 0:
		v.cacheTTL = c.CacheTTL
	}
	if v.cacheTTL > 0 {
		v.cache, _ = lru.New[[sha256.Size]byte, *verifiedToken](tokenCacheSize)
	}
	if v.claims.Tenant == "" {
		v.claims.Tenant = "tenantId"
	}
	if v.claims.App == "" {
		v.claims.App = "client_id"
	}
	if v.claims.User == "" {
		v.claims.User = "sub"
	}
	if v.claims.Scope == "" {
		v.claims.Scope = "scope"
	}
	var algs []string
	switch {
	case c.Keyfunc != nil:
		if len(c.Algorithms) == 0 {
			return nil, errors.New("Auth.Algorithms is required with Auth.Keyfunc")
		}
		for _, a := range c.Algorithms {
			if a == "" || strings.EqualFold(a, "none") || jwt.GetSigningMethod(a) == nil {
				return nil, fmt.Errorf("Auth.Algorithms: unsupported algorithm %q", a)
			}
		}
		algs = c.Algorithms
		v.keyfunc = c.Keyfunc
	case len(c.Keys) > 0:
		seen := map[string]bool{}
		for i, k := range c.Keys {
			vk, err := parseKey(k)
			if err != nil {
				return nil, fmt.Errorf("Auth.Keys[%d]: %w", i, err)
			}
			v.keys = append(v.keys, vk)
			for _, a := range vk.algs {
				if !seen[a] {
					seen[a] = true
					algs = append(algs, a)
				}
			}
		}
		v.keyfunc = v.lookup
	default:
		return nil, errors.New("Auth.Keys or Auth.Keyfunc is required")
	}
	v.algs = algs
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(c.Leeway),
		jwt.WithTimeFunc(now),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	// The header checks run before any key is looked up, with Keys and
	// with a Keyfunc alike.
	keyfunc := v.keyfunc
	v.keyfunc = func(t *jwt.Token) (any, error) {
		if err := checkHeader(t.Header); err != nil {
			return nil, err
		}
		k, err := keyfunc(t)
		var ke *keyError
		if err != nil && !errors.As(err, &ke) {
			err = &keyError{reason: reasonUnknownKey, err: err} // a Keyfunc's: no key for the token
		}
		return k, err
	}
	return v, nil
}

// The reasons a bearer token is refused: a fixed list (design.md), so that
// a 401 says which check failed without echoing anything of the token.
// Each is the whole message of the 401 invalid_token, its
// WWW-Authenticate error_description and the reason of the server's log
// line.
const (
	reasonMalformed     = "malformed"
	reasonAlgorithm     = "unsupported algorithm"
	reasonUnknownKey    = "unknown key"
	reasonBadSignature  = "bad signature"
	reasonExpired       = "expired"
	reasonNotYetValid   = "not yet valid"
	reasonWrongIssuer   = "wrong issuer"
	reasonWrongAudience = "wrong audience"
)

// reasonMissingClaim and reasonInvalidID complete the list, for a claim by
// its configured name.
func reasonMissingClaim(name string) string { return "missing claim " + name }
func reasonInvalidID(name string) string    { return "invalid id in claim " + name }

// tokenRefused is the 401 of a token refused for reason (one of the list
// above); err, the cause, stays internal.
func tokenRefused(reason string, err error) *Error {
	return &Error{Code: CodeInvalidToken, Message: reason, Err: err}
}

// keyError is a failure of the key lookup (checkHeader, lookup or a
// Keyfunc), carrying its reason through the jwt parser.
type keyError struct {
	reason string
	err    error
}

func (e *keyError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// refusal names the reason of a failed ParseWithClaims: the first check
// that failed, in the parser's order (header and algorithm, key, signature,
// then the claims: exp, nbf, iss, aud). The signature is checked before any
// claim, so an expired token with a bad signature is a bad signature.
func (v *verifier) refusal(tok *jwt.Token, claims jwt.MapClaims, err error) string {
	var ke *keyError
	missing := func(name string) bool {
		val, ok := claims[name]
		return !ok || val == nil || val == ""
	}
	switch {
	case errors.As(err, &ke):
		return ke.reason
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reasonMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The keyfunc's failures are keyErrors: this is an alg that jwt
		// does not know, or none at all.
		return reasonAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && !slices.Contains(v.algs, tok.Method.Alg()) {
			return reasonAlgorithm // "none", or an algorithm no key verifies
		}
		return reasonBadSignature
	case errors.Is(err, jwt.ErrInvalidType):
		return reasonMalformed // exp, nbf, iss or aud of the wrong type
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && missing("exp"):
		return reasonMissingClaim("exp")
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reasonWrongIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.issuer != "" && missing("iss"):
		return reasonMissingClaim("iss")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reasonWrongAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.aud != "":
		return reasonMissingClaim("aud")
	}
	return reasonMalformed
}

// checkHeader refuses a token header that asks for more than the engine
// does. crit (RFC 7515 section 4.1.11) lists extensions the recipient must
// understand, or refuse the token; the engine understands none, and
// golang-jwt ignores crit, so a token that has the header at all (even
// empty or null, which the RFC forbids) is refused. jku, x5u, jwk and x5c
// would let the token choose its own verification key: refused too.
func checkHeader(h map[string]any) error {
	if _, ok := h["crit"]; ok {
		return &keyError{reason: reasonMalformed, err: errors.New(`header "crit" is not accepted`)}
	}
	for _, name := range []string{"jku", "x5u", "jwk", "x5c"} {
		if _, ok := h[name]; ok {
			return &keyError{reason: reasonUnknownKey, err: fmt.Errorf("header %q is not accepted", name)}
		}
	}
	return nil
}

// Validate reports whether the key can be used: a secret of at least 32
// bytes, or a PEM public key of a supported type. New calls it for every key
// of Config.Auth.Keys; a server can call it to check its configuration early.
func (k Key) Validate() error {
	_, err := parseKey(k)
	return err
}

func parseKey(k Key) (verifyKey, error) {
	vk := verifyKey{id: k.ID}
	switch {
	case len(k.Secret) > 0 && len(k.PublicKeyPEM) > 0:
		return vk, errors.New("set Secret or PublicKeyPEM, not both")
	case len(k.Secret) > 0:
		if len(k.Secret) < 32 {
			return vk, errors.New("Secret must be at least 32 bytes")
		}
		vk.key, vk.family, vk.algs = append([]byte(nil), k.Secret...), "hmac", []string{"HS256", "HS384", "HS512"}
		return vk, nil
	case len(k.PublicKeyPEM) > 0:
		block, _ := pem.Decode(k.PublicKeyPEM)
		if block == nil {
			return vk, errors.New("PublicKeyPEM holds no PEM block")
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				pub = cert.PublicKey
			}
		default:
			return vk, fmt.Errorf("PEM block %q is not a public key", block.Type)
		}
		if err != nil {
			return vk, fmt.Errorf("PublicKeyPEM: %w", err)
		}
		switch p := pub.(type) {
		case *rsa.PublicKey:
			vk.key, vk.family, vk.algs = p, "rsa", []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
		case *ecdsa.PublicKey:
			vk.key, vk.family = p, "ecdsa"
			switch p.Curve {
			case elliptic.P256():
				vk.algs = []string{"ES256"}
			case elliptic.P384():
				vk.algs = []string{"ES384"}
			case elliptic.P521():
				vk.algs = []string{"ES512"}
			default:
				return vk, errors.New("unsupported ECDSA curve")
			}
		case ed25519.PublicKey:
			vk.key, vk.family, vk.algs = p, "ed25519", []string{"EdDSA"}
		default:
			return vk, fmt.Errorf("unsupported public key type %T", pub)
		}
		return vk, nil
	}
	return vk, errors.New("Secret or PublicKeyPEM is required")
}

// lookup is the jwt.Keyfunc over the configured keys (after checkHeader):
// kid is compared exactly and never used for anything else; keys are
// offered only for the family of the token's (already allow-listed)
// algorithm.
func (v *verifier) lookup(t *jwt.Token) (any, error) {
	alg, _ := t.Header["alg"].(string)
	var kid string
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, &keyError{reason: reasonMalformed, err: errors.New("kid is not a string")}
		}
		kid = s
	}
	_, hasKid := t.Header["kid"]
	var set jwt.VerificationKeySet
	for _, k := range v.keys {
		if hasKid && k.id != kid {
			continue
		}
		for _, a := range k.algs {
			if a == alg {
				set.Keys = append(set.Keys, k.key)
				break
			}
		}
	}
	if len(set.Keys) == 0 {
		return nil, &keyError{reason: reasonUnknownKey, err: errors.New("no key for this token")}
	}
	return set, nil
}

// verify checks a bearer token and returns the identity it carries. Every
// failure is invalid_token with its reason (see tokenRefused). A token verified
// in the last cacheTTL is answered from the cache while it is still valid
// (see AuthConfig.CacheTTL); callers must not change the returned Scopes.
func (v *verifier) verify(raw string) (Identity, error) {
	if v.cache == nil {
		t, err := v.parse(raw)
		if err != nil {
			return Identity{}, err
		}
		return t.id, nil
	}
	sum := tokenSum(raw)
	now := v.now()
	if t, ok := v.cache.Get(sum); ok {
		if v.fresh(t, now) {
			return t.id, nil
		}
		v.cache.Remove(sum)
	}
	t, err := v.parse(raw)
	if err != nil {
		return Identity{}, err
	}
	t.at = now // taken before parsing: the entry ends no later than it should
	v.cache.Add(sum, t)
	return t.id, nil
}

// tokenSum is the SHA-256 of a raw token, the key of the token cache. A
// token that fits in maxStackToken bytes (most do) is hashed from a copy on
// the stack, so that a cache hit allocates nothing; a longer one from a
// copy on the heap.
func tokenSum(raw string) [sha256.Size]byte {
	if len(raw) > maxStackToken {
		return sha256.Sum256([]byte(raw))
	}
	var buf [maxStackToken]byte
	return sha256.Sum256(buf[:copy(buf[:], raw)])
}

const maxStackToken = 1024

// fresh reports whether a cached token may answer at now: within cacheTTL
// of its verification (never before it, should the clock go back), and
// valid by exp and nbf exactly as jwt's validator decides (now < exp +
// leeway, now >= nbf - leeway).
func (v *verifier) fresh(t *verifiedToken, now time.Time) bool {
	return !now.Before(t.at) && now.Before(t.at.Add(v.cacheTTL)) &&
		now.Before(t.exp.Add(v.leeway)) && !now.Before(t.nbf.Add(-v.leeway))
}

// parse verifies a token (signature, header, algorithm, exp, nbf, iss, aud)
// and reads its identity, without the cache.
func (v *verifier) parse(raw string) (*verifiedToken, error) {
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc)
	if err != nil {
		return nil, tokenRefused(v.refusal(tok, claims, err), err)
	}
	// id reads the id claim name: a string that validID accepts; has is
	// false when the claim is absent.
	id := func(name string) (s string, has bool, err error) {
		val, has := claims[name]
		if !has {
			return "", false, nil
		}
		if s, ok := val.(string); ok && validID(s) {
			return s, true, nil
		}
		return "", true, tokenRefused(reasonInvalidID(name), nil)
	}
	var ident Identity
	for _, c := range []struct {
		name string
		dst  *string
	}{{v.claims.Tenant, &ident.Tenant}, {v.claims.App, &ident.App}} {
		var has bool
		if *c.dst, has, err = id(c.name); err != nil {
			return nil, err
		} else if !has {
			return nil, tokenRefused(reasonMissingClaim(c.name), nil)
		}
	}
	// The user claim, when present, must be a valid id, "" included; only
	// a missing one, or one equal to the app, means no user.
	if user, ok := claims[v.claims.User].(string); ok && user == ident.App {
		ident.User = "" // a client-credentials token carries no user
	} else if ident.User, _, err = id(v.claims.User); err != nil {
		return nil, err
	}
	switch s := claims[v.claims.Scope].(type) {
	case nil:
	case string:
		ident.Scopes = strings.Split(s, " ")
	case []any:
		for _, e := range s {
			es, ok := e.(string)
			if !ok {
				return nil, tokenRefused(reasonMalformed, fmt.Errorf("the %s claim holds a %T", v.claims.Scope, e))
			}
			ident.Scopes = append(ident.Scopes, es)
		}
	default:
		return nil, tokenRefused(reasonMalformed, fmt.Errorf("the %s claim is a %T, not a string or an array of strings", v.claims.Scope, s))
	}
	t := &verifiedToken{id: ident}
	// The parser required exp and read both claims without error.
	if exp, _ := claims.GetExpirationTime(); exp != nil {
		t.exp = exp.Time
	}
	if nbf, _ := claims.GetNotBefore(); nbf != nil {
		t.nbf = nbf.Time
	}
	return t, nil
}

// bearer extracts the bearer token of a request, capped before any parsing.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		e := errorf(CodeInvalidToken, "missing Authorization: Bearer token")
		e.logReason = "no Authorization header"
		return "", e
	}
	if len(h) > 1 {
		return "", errorf(CodeInvalidToken, "more than one Authorization header")
	}
	if len(h[0]) > maxAuthHeader {
		return "", errorf(CodeInvalidToken, "the Authorization header is too long")
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		e := errorf(CodeInvalidToken, "the Authorization header must be: Bearer <token>")
		e.logReason = "the Authorization header is not of the bearer scheme with one token"
		return "", e
	}
	return tok, nil
}

// authorizeCall reads the request's ?tier= and authorizes access a on it:
// the prologue of every storage endpoint whose tier is in the query.
func (e *Engine) authorizeCall(c *call, a Access) (Identity, Tier, error) {
	if c.as != nil {
		// An admin route of admin_browse.go, authorized with the admin
		// token: the location comes from its path, not from a token.
		c.setTenant(c.as.id.Tenant)
		return c.as.id, c.as.tier, nil
	}
	tier, err := tierParam(c.r)
	if err != nil {
		return Identity{}, "", err
	}
	id, err := e.authorize(c, tier, a)
	if err == nil {
		c.setTenant(id.Tenant)
	}
	return id, tier, err
}

// authorize verifies the request's token, spends one request of its
// tenant's and app's rate limits (Config.RateLimit), looks up its app and
// checks that access a on tier t is both declared by the app and granted by
// the token.
func (e *Engine) authorize(c *call, t Tier, a Access) (Identity, error) {
	tok, err := bearer(c.r)
	if err != nil {
		return Identity{}, err
	}
	id, err := e.verifier.verify(tok)
	if err != nil {
		return Identity{}, err
	}
	// Tenant and app are known, no backend was asked anything yet.
	if err := e.rateLimit(c, rateClassAPI, id.Tenant, id.App); err != nil {
		return Identity{}, err
	}
	app, err := e.apps.lookup(c.r.Context(), id.App)
	if err != nil {
		return Identity{}, err
	}
	scope := Scope(t, a)
	if !app.declares(scope) {
		return Identity{}, errorf(CodeInvalidScope, "app %q did not declare the scope %s", id.App, scope)
	}
	if !id.hasScope(scope) {
		return Identity{}, errorf(CodeInsufficientScope, "the token does not grant the scope %s", scope)
	}
	if t == TierUser && id.User == "" {
		return Identity{}, errorf(CodeUserRequired, "the user tier needs a token that carries a user")
	}
	return id, nil
}

// authorizeAdmin checks the request's bearer against the configured admin
// tokens in constant time (every token is compared, hashes of equal length).
func (e *Engine) authorizeAdmin(r *http.Request) error {
	tok, err := bearer(r)
	if err != nil {
		return err
	}
	got := sha256.Sum256([]byte(tok))
	match := 0
	for _, want := range e.adminTokens {
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	if match != 1 {
		return errorf(CodeInvalidToken, "not an admin token")
	}
	return nil
}
