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
	claims  ClaimNames
	now     func() time.Time
	leeway  time.Duration

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
	v := &verifier{claims: c.Claims, now: now, leeway: c.Leeway}
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
		return keyfunc(t)
	}
	return v, nil
}

// checkHeader refuses a token header that asks for more than the engine
// does. crit (RFC 7515 section 4.1.11) lists extensions the recipient must
// understand, or refuse the token; the engine understands none, and
// golang-jwt ignores crit, so a token that has the header at all (even
// empty or null, which the RFC forbids) is refused. jku, x5u, jwk and x5c
// would let the token choose its own verification key: refused too.
func checkHeader(h map[string]any) error {
	for _, name := range []string{"crit", "jku", "x5u", "jwk", "x5c"} {
		if _, ok := h[name]; ok {
			return fmt.Errorf("header %q is not accepted", name)
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
			return nil, errors.New("kid is not a string")
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
		return nil, errors.New("no key for this token")
	}
	return set, nil
}

// verify checks a bearer token and returns the identity it carries. Every
// failure is invalid_token; the reason is for the log only. A token verified
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
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc); err != nil {
		return nil, &Error{Code: CodeInvalidToken, Message: "the bearer token is not valid", Err: err}
	}
	str := func(name string) (string, bool) {
		val, ok := claims[name]
		if !ok {
			return "", true
		}
		s, ok := val.(string)
		return s, ok
	}
	bad := func(what string) (*verifiedToken, error) {
		return nil, errorf(CodeInvalidToken, "the token's %s claim is missing or not a valid id", what)
	}
	var id Identity
	var ok bool
	if id.Tenant, ok = str(v.claims.Tenant); !ok || !validID(id.Tenant) {
		return bad(v.claims.Tenant)
	}
	if id.App, ok = str(v.claims.App); !ok || !validID(id.App) {
		return bad(v.claims.App)
	}
	// The user claim, when present, must be a valid id, "" included; only
	// a missing one, or one equal to the app, means no user.
	_, hasUser := claims[v.claims.User]
	if id.User, ok = str(v.claims.User); !ok {
		return bad(v.claims.User)
	}
	if id.User == id.App {
		id.User = "" // a client-credentials token carries no user
	} else if hasUser && !validID(id.User) {
		return bad(v.claims.User)
	}
	switch s := claims[v.claims.Scope].(type) {
	case nil:
	case string:
		id.Scopes = strings.Split(s, " ")
	case []any:
		for _, e := range s {
			es, ok := e.(string)
			if !ok {
				return nil, errorf(CodeInvalidToken, "the token's %s claim must hold strings", v.claims.Scope)
			}
			id.Scopes = append(id.Scopes, es)
		}
	default:
		return nil, errorf(CodeInvalidToken, "the token's %s claim must be a string or an array of strings", v.claims.Scope)
	}
	t := &verifiedToken{id: id}
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
		return "", errorf(CodeInvalidToken, "missing Authorization: Bearer token")
	}
	if len(h) > 1 {
		return "", errorf(CodeInvalidToken, "more than one Authorization header")
	}
	if len(h[0]) > maxAuthHeader {
		return "", errorf(CodeInvalidToken, "the Authorization header is too long")
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", errorf(CodeInvalidToken, "the Authorization header must be: Bearer <token>")
	}
	return tok, nil
}

// authorizeCall reads the request's ?tier= and authorizes access a on it:
// the prologue of every storage endpoint whose tier is in the query.
func (e *Engine) authorizeCall(c *call, a Access) (Identity, Tier, error) {
	tier, err := tierParam(c.r)
	if err != nil {
		return Identity{}, "", err
	}
	id, err := e.authorize(c.r, tier, a)
	if err == nil {
		c.setTenant(id.Tenant)
	}
	return id, tier, err
}

// authorize verifies the request's token, looks up its app and checks that
// access a on tier t is both declared by the app and granted by the token.
func (e *Engine) authorize(r *http.Request, t Tier, a Access) (Identity, error) {
	tok, err := bearer(r)
	if err != nil {
		return Identity{}, err
	}
	id, err := e.verifier.verify(tok)
	if err != nil {
		return Identity{}, err
	}
	app, err := e.apps.lookup(r.Context(), id.App)
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
