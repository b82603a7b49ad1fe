package storage

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// The verified-token cache (AuthConfig.CacheTTL) must answer exactly as a
// full verification would, on the engine's clock, and only save the work.

// testClock is an engine clock that tests move.
type testClock struct{ off atomic.Int64 }

var clockBase = time.Unix(1_800_000_000, 0)

func (c *testClock) now() time.Time             { return clockBase.Add(time.Duration(c.off.Load())) }
func (c *testClock) set(at time.Time)           { c.off.Store(int64(at.Sub(clockBase))) }
func (c *testClock) advance(d time.Duration)    { c.off.Add(int64(d)) }
func (c *testClock) unix(d time.Duration) int64 { return c.now().Add(d).Unix() }

// keySet is a Keyfunc over ES256 keys that can change, like a JWKS, and
// counts its calls: a call is a verification that the cache did not save.
type keySet struct {
	mu    sync.Mutex
	keys  map[string]*ecdsa.PublicKey
	calls atomic.Int64
	hook  func() // called on each lookup when set
}

func (k *keySet) keyfunc(t *jwt.Token) (any, error) {
	k.calls.Add(1)
	if k.hook != nil {
		k.hook()
	}
	kid, _ := t.Header["kid"].(string)
	k.mu.Lock()
	defer k.mu.Unlock()
	if pub, ok := k.keys[kid]; ok {
		return pub, nil
	}
	return nil, errors.New("unknown kid")
}

func (k *keySet) set(kid string, pub *ecdsa.PublicKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if pub == nil {
		delete(k.keys, kid)
	} else {
		k.keys[kid] = pub
	}
}

type cacheFixture struct {
	v     *verifier
	clock *testClock
	keys  *keySet
	priv  *ecdsa.PrivateKey
}

func newCacheFixture(t *testing.T, ttl, leeway time.Duration) *cacheFixture {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &cacheFixture{clock: &testClock{}, keys: &keySet{keys: map[string]*ecdsa.PublicKey{"k1": &priv.PublicKey}}, priv: priv}
	f.v, err = newVerifier(AuthConfig{Keyfunc: f.keys.keyfunc, Algorithms: []string{"ES256"}, Leeway: leeway, CacheTTL: ttl}, f.clock.now)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// token signs claims (tenant t1, app app-a unless given) with kid k1.
func (f *cacheFixture) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"tenantId": "t1", "client_id": "app-a", "sub": "u1", "scope": "storage.private.read"}
	for k, v := range claims {
		c[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(f.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuthCacheSavesVerification: a token verified once is answered from
// the cache (no key lookup, no signature check) within CacheTTL, and
// verified again after it.
func TestAuthCacheSavesVerification(t *testing.T) {
	f := newCacheFixture(t, time.Second, 0)
	tok := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour)})
	for range 5 {
		id, err := f.v.verify(tok)
		if err != nil || id.Tenant != "t1" || id.App != "app-a" || id.User != "u1" || !id.hasScope("storage.private.read") {
			t.Fatalf("verify = %+v, %v", id, err)
		}
	}
	if n := f.keys.calls.Load(); n != 1 {
		t.Fatalf("%d verifications of one token within CacheTTL, want 1", n)
	}
	f.clock.advance(time.Second - 1)
	if _, err := f.v.verify(tok); err != nil || f.keys.calls.Load() != 1 {
		t.Fatalf("just before CacheTTL: err %v, %d verifications, want the cached answer", err, f.keys.calls.Load())
	}
	f.clock.advance(1)
	if _, err := f.v.verify(tok); err != nil || f.keys.calls.Load() != 2 {
		t.Fatalf("at CacheTTL: err %v, %d verifications, want a new verification", err, f.keys.calls.Load())
	}
}

// TestAuthCacheDisabled: a negative CacheTTL verifies every call; over
// a minute is refused by New.
func TestAuthCacheDisabled(t *testing.T) {
	f := newCacheFixture(t, -1, 0)
	tok := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour)})
	for range 3 {
		if _, err := f.v.verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.keys.calls.Load(); n != 3 {
		t.Fatalf("%d verifications of 3 calls with the cache disabled", n)
	}
	if _, err := newVerifier(AuthConfig{Keyfunc: f.keys.keyfunc, Algorithms: []string{"ES256"}, CacheTTL: time.Minute + 1}, time.Now); err == nil || !strings.Contains(err.Error(), "CacheTTL") {
		t.Fatalf("CacheTTL over a minute: err %v", err)
	}
}

// TestAuthCacheExpiresExactly: a cached token is refused from the instant
// its exp (plus Leeway) passes, and a token whose nbf is ahead stays
// refused until it, exactly as a verification without the cache decides,
// even with a CacheTTL that outlives the token. Every instant around the
// boundaries is checked against an uncached verifier.
func TestAuthCacheExpiresExactly(t *testing.T) {
	for _, leeway := range []time.Duration{0, 5 * time.Second} {
		f := newCacheFixture(t, time.Minute, leeway)
		plain, err := newVerifier(AuthConfig{Keyfunc: f.keys.keyfunc, Algorithms: []string{"ES256"}, Leeway: leeway, CacheTTL: -1}, f.clock.now)
		if err != nil {
			t.Fatal(err)
		}
		start := f.clock.now()
		exp := start.Add(20 * time.Second)
		nbf := start.Add(8 * time.Second)
		toks := map[string]string{
			"exp":     f.token(t, jwt.MapClaims{"exp": exp.Unix()}),
			"exp+nbf": f.token(t, jwt.MapClaims{"exp": exp.Unix(), "nbf": nbf.Unix()}),
		}
		// From before nbf-leeway to after exp+leeway, in steps that land
		// on the boundaries and a nanosecond either side of them.
		var instants []time.Time
		for _, b := range []time.Time{nbf.Add(-leeway), exp.Add(leeway)} {
			instants = append(instants, b.Add(-time.Second), b.Add(-1), b, b.Add(1), b.Add(time.Second))
		}
		instants = append(instants, start, start.Add(15*time.Second))
		for name, tok := range toks {
			f.clock.set(start)
			if _, err := f.v.verify(tok); (err == nil) != (name == "exp" || leeway >= 8*time.Second) {
				t.Fatalf("%s at start: %v", name, err)
			}
			for _, at := range instants {
				if at.Before(start) {
					continue // the clock only moves forward here
				}
				f.clock.set(at)
				_, want := plain.verify(tok)
				_, got := f.v.verify(tok)
				if (got == nil) != (want == nil) {
					t.Fatalf("leeway %v, %s at %v after start: cached verify says %v, a full verification %v", leeway, name, at.Sub(start), got, want)
				}
			}
		}
		f.clock.set(exp.Add(leeway))
		if _, err := f.v.verify(toks["exp"]); err == nil {
			t.Fatalf("leeway %v: a cached token is accepted at exp+leeway", leeway)
		}
	}
}

// TestAuthCacheNotBeforeExactly: the clock may pass a token's nbf while it
// is being verified (the cache entry is dated from before); the entry must
// still not answer at an instant before nbf.
func TestAuthCacheNotBeforeExactly(t *testing.T) {
	f := newCacheFixture(t, time.Minute, 0)
	nbf := f.clock.now().Add(10 * time.Second)
	tok := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour), "nbf": nbf.Unix()})
	f.clock.set(nbf.Add(-1))
	f.keys.hook = func() { f.clock.set(nbf) } // verification ends at nbf
	if _, err := f.v.verify(tok); err != nil {
		t.Fatal(err)
	}
	f.keys.hook = nil
	f.clock.set(nbf.Add(-1))
	if _, err := f.v.verify(tok); err == nil {
		t.Fatal("a cached token is accepted before its nbf")
	}
}

// TestAuthCacheKeyIsWholeToken: the cache is keyed by the whole token, so
// a token whose signature or payload differs from a cached one is verified
// on its own and refused when it is forged; a verified token stays valid.
func TestAuthCacheKeyIsWholeToken(t *testing.T) {
	f := newCacheFixture(t, time.Minute, 0)
	tok := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour)})
	if _, err := f.v.verify(tok); err != nil {
		t.Fatal(err)
	}
	head, sig := tok[:strings.LastIndexByte(tok, '.')+1], tok[strings.LastIndexByte(tok, '.')+1:]
	// Change one character in the middle of the signature (the last one
	// may differ only in unused bits).
	flip := []byte(sig)
	flip[len(flip)/2] ^= 'A' ^ 'B'
	if flip[len(flip)/2] == sig[len(sig)/2] {
		t.Fatal("no change")
	}
	// Another key's valid signature over the same header and payload.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherSig, _ := jwt.SigningMethodES256.Sign(strings.TrimSuffix(head, "."), other)
	// A payload with another tenant under the cached token's signature.
	parts := strings.Split(tok, ".")
	forged := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour), "tenantId": "t2"})
	forgedParts := strings.Split(forged, ".")
	for name, bad := range map[string]string{
		"flipped signature":        head + string(flip),
		"another key's signature":  head + base64.RawURLEncoding.EncodeToString(otherSig),
		"no signature":             head,
		"payload swapped":          parts[0] + "." + forgedParts[1] + "." + parts[2],
		"token with trailing data": tok + "x",
	} {
		if _, err := f.v.verify(bad); err == nil {
			t.Errorf("%s: accepted after the genuine token was cached", name)
		}
	}
	if id, err := f.v.verify(tok); err != nil || id.Tenant != "t1" {
		t.Fatalf("the genuine token: %+v, %v", id, err)
	}
}

// TestAuthCacheNeverKeepsFailures: a token that fails, whether at the
// signature or at its claims after a valid signature (a bad tenant id, a
// scope of the wrong type), is never cached, and fails every time.
func TestAuthCacheNeverKeepsFailures(t *testing.T) {
	f := newCacheFixture(t, time.Minute, 0)
	exp := f.clock.unix(time.Hour)
	good := f.token(t, jwt.MapClaims{"exp": exp})
	bad := map[string]string{
		"bad signature": good[:strings.LastIndexByte(good, '.')+1] + "AAAA",
		"bad tenant":    f.token(t, jwt.MapClaims{"exp": exp, "tenantId": "a/b"}),
		"scope type":    f.token(t, jwt.MapClaims{"exp": exp, "scope": 42}),
		"no exp":        f.token(t, jwt.MapClaims{}),
		"expired":       f.token(t, jwt.MapClaims{"exp": f.clock.unix(-time.Second)}),
	}
	for name, tok := range bad {
		for i := range 3 {
			var e *Error
			if _, err := f.v.verify(tok); !errors.As(err, &e) || e.Code != CodeInvalidToken {
				t.Fatalf("%s, call %d: %v, want invalid_token", name, i, err)
			}
		}
	}
	if n := f.v.cache.Len(); n != 0 {
		t.Fatalf("the cache holds %d entries after failures only", n)
	}
}

// TestAuthCacheKeyRotation: when a key leaves the key set (a JWKS
// rotation), a token it verified is accepted for at most CacheTTL after
// its verification, and a token not yet cached is refused at once.
func TestAuthCacheKeyRotation(t *testing.T) {
	const ttl = time.Second
	f := newCacheFixture(t, ttl, 0)
	cached := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour)})
	fresh := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour), "sub": "u2"})
	if _, err := f.v.verify(cached); err != nil {
		t.Fatal(err)
	}
	f.keys.set("k1", nil)
	if _, err := f.v.verify(fresh); err == nil {
		t.Fatal("a token of a removed key was accepted")
	}
	f.clock.advance(ttl - 1)
	if _, err := f.v.verify(cached); err != nil {
		t.Fatalf("within CacheTTL: %v", err)
	}
	f.clock.advance(1)
	if _, err := f.v.verify(cached); err == nil {
		t.Fatal("a token of a removed key is still accepted CacheTTL after its verification")
	}
}

// TestAuthCacheBounded: however many distinct valid tokens come, the cache
// holds at most its size, and evicted tokens still verify.
func TestAuthCacheBounded(t *testing.T) {
	f := newCacheFixture(t, time.Minute, 0)
	f.v.cache, _ = lru.New[[32]byte, *verifiedToken](4)
	var toks []string
	for i := range 20 {
		toks = append(toks, f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour), "sub": "u" + string(rune('a'+i))}))
	}
	for _, tok := range toks {
		if _, err := f.v.verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.v.cache.Len(); n != 4 {
		t.Fatalf("the cache holds %d tokens, want its size 4", n)
	}
	for _, tok := range toks {
		if id, err := f.v.verify(tok); err != nil || id.User == "" {
			t.Fatal(err)
		}
	}
	if tokenCacheSize != 10000 {
		t.Fatalf("tokenCacheSize %d: AuthConfig.CacheTTL documents 10000", tokenCacheSize)
	}
}

// TestAuthCacheClockBack: an entry is not used at an instant before its
// verification (a clock moved back), so it cannot outlive CacheTTL that way.
func TestAuthCacheClockBack(t *testing.T) {
	f := newCacheFixture(t, time.Second, 0)
	tok := f.token(t, jwt.MapClaims{"exp": f.clock.unix(time.Hour)})
	if _, err := f.v.verify(tok); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(-time.Minute)
	if _, err := f.v.verify(tok); err != nil || f.keys.calls.Load() != 2 {
		t.Fatalf("clock moved back: err %v, %d verifications, want a new one", err, f.keys.calls.Load())
	}
}
