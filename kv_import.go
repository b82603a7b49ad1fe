// Importing kv keys from Redis into the SQLite store: how the embedded
// store takes over the kv values an earlier version kept in miniredis and
// saved to kv.snapshot (package embedded reads that file and calls this
// once, on start).

package storage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"
)

// RedisKey is one key of a Redis that held an engine's kv values (Config.
// Redis with Config.RedisKeyPrefix), as a dump of it holds the key.
type RedisKey struct {
	Key  string // the Redis key
	Type string // Redis' type: "string", or "hash" (a counter's nonces)
	// Value is a string's value.
	Value string
	// Fields are a hash's fields and values.
	Fields [][2]string
	// ExpireAt is the key's expiry in Unix milliseconds, 0 for none.
	ExpireAt int64
}

// KVImportCounts is what a KVImport did.
type KVImportCounts struct {
	Keys    int64 // kv keys written to the SQLite store
	Expired int64 // kv keys whose TTL had ended, left out
	Skipped int64 // Redis keys of the Redis driver's own (counters' increment nonces)
}

// KVImport copies kv keys from a dump of the Redis keys of an engine into a
// SQLite database for Config.SQL, in one transaction: Commit writes them
// all, and nothing is written without it. A key the database holds
// already is overwritten, so an import that stopped is done again whole.
//
// Add checks each key strictly against what the Redis driver writes (key
// format and prefix, a location of tiers.go, a kv key's rules, the stored
// form of kv_values.go with its expiry, UTF-8 text; nonce hashes of 16 hex
// digits to integers) and fails, naming the key, on anything else, so that
// a damaged dump is refused rather than imported as other data. What it
// cannot see: a change that leaves a valid key or value (another letter in
// a value), and an expiry moved by less than the tolerance of
// kvImportSkew.
type KVImport struct {
	tx     *sql.Tx
	put    *sql.Stmt
	prefix string
	now    int64
	n      KVImportCounts
}

// kvImportSkew bounds how far a key's Redis expiry (the dump's ExpireAt)
// may lie from the expiry stored in its value (kv_values.go), in ms. The
// value's is set on the engine's clock just before the command and Redis
// counts the TTL from when it runs it, so Redis' comes later by the
// command's wait (up to BackendTimeout under load) and by any lag of the
// embedded Redis' clock (restarts add theirs); it never comes much
// earlier.
const (
	kvImportEarly = 2 * time.Second
	kvImportLate  = 5 * time.Minute
)

// NewKVImport starts an import into db (creating the engine's tables if
// missing); redisKeyPrefix is the prefix the engine wrote its Redis keys
// with (Config.RedisKeyPrefix, default "cpod:"), now the time against
// which TTLs count. The caller ends it with Commit or Rollback.
func NewKVImport(ctx context.Context, db *sql.DB, redisKeyPrefix string, now time.Time) (*KVImport, error) {
	if redisKeyPrefix == "" {
		redisKeyPrefix = "cpod:"
	}
	if strings.ContainsAny(redisKeyPrefix, "{}") {
		return nil, fmt.Errorf("kv import: the key prefix %q holds a brace", redisKeyPrefix)
	}
	if err := newSQLStore(db, slog.New(slog.DiscardHandler)).ready(ctx); err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	put, err := tx.PrepareContext(ctx, kvSet)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return &KVImport{tx: tx, put: put, prefix: redisKeyPrefix, now: now.UnixMilli()}, nil
}

// Add checks k and writes it when it is a kv key that has not expired.
func (im *KVImport) Add(ctx context.Context, k RedisKey) error {
	loc, suffix, err := im.parseKey(k.Key)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("key %q", k.Key)
	if k.ExpireAt < 0 {
		return fmt.Errorf("%s: expiry %d", name, k.ExpireAt)
	}
	switch suffix {
	case ":nonces", ":nonces:prev":
		if k.Type != "hash" || len(k.Fields) == 0 || k.Value != "" {
			return fmt.Errorf("%s: a counter's nonces must be a hash", name)
		}
		for _, f := range k.Fields {
			if len(f[0]) != 16 || strings.Trim(f[0], "0123456789abcdef") != "" {
				return fmt.Errorf("%s: nonce %q is not 16 hex digits", name, f[0])
			}
			if _, ok := kvInt(f[1]); !ok {
				return fmt.Errorf("%s: nonce %s holds %q, not an integer", name, f[0], f[1])
			}
		}
		if k.ExpireAt == 0 {
			return fmt.Errorf("%s: a counter's nonces always expire", name)
		}
		im.n.Skipped++
		return nil
	case ":incr":
		if _, ok := kvInt(k.Value); k.Type != "string" || !ok {
			return fmt.Errorf("%s: a counter's scratch key must hold an integer", name)
		}
		im.n.Skipped++
		return nil
	}
	if k.Type != "string" || len(k.Fields) != 0 {
		return fmt.Errorf("%s: type %s, but the engine stores a kv value as a string", name, k.Type)
	}
	text, exp, ok := kvDecode(k.Value)
	if !utf8.ValidString(text) {
		return fmt.Errorf("%s: the value is not UTF-8 text", name)
	}
	if ok {
		// The current form: the expiry is in the value and in Redis.
		switch {
		case exp == 0 && k.ExpireAt != 0:
			return fmt.Errorf("%s: the value has no expiry but Redis has one", name)
		case exp != 0 && k.ExpireAt == 0:
			return fmt.Errorf("%s: the value has an expiry but Redis has none", name)
		case exp != 0 && (k.ExpireAt < exp-kvImportEarly.Milliseconds() || k.ExpireAt > exp+kvImportLate.Milliseconds()):
			return fmt.Errorf("%s: the value's expiry (%d) and Redis' (%d) disagree", name, exp, k.ExpireAt)
		}
	} else {
		exp = k.ExpireAt // a value stored before that form: only Redis has it
	}
	if exp > im.now+(maxKVTTL+24*60*60)*1000 {
		return fmt.Errorf("%s: expiry %d is more than a year ahead", name, exp)
	}
	if exp != 0 && exp <= im.now {
		im.n.Expired++
		return nil
	}
	if _, err := im.put.ExecContext(ctx, loc, text, exp); err != nil {
		return err
	}
	im.n.Keys++
	return nil
}

// parseKey reads a Redis key of the driver (redisKey): its location key
// and the suffix of a counter's own keys ("" for a value).
func (im *KVImport) parseKey(k string) (loc, suffix string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("key %q: %s", k, why)
	}
	if !strings.HasPrefix(k, im.prefix) {
		return bad(fmt.Sprintf("not under the key prefix %q", im.prefix))
	}
	rest := k[len(im.prefix):]
	hashed := strings.HasPrefix(rest, "}{")
	switch {
	case hashed && len(rest) > 19 && rest[18] == '}':
		rest = rest[19:]
	case !hashed && strings.HasPrefix(rest, "{"):
		rest = rest[1:]
	default:
		return bad("not a kv key of the engine")
	}
	i := strings.LastIndexByte(rest, '}')
	if i < 0 {
		return bad("not a kv key of the engine")
	}
	loc, suffix = rest[:i], rest[i+1:]
	switch suffix {
	case "", ":nonces", ":nonces:prev", ":incr":
	default:
		return bad("not a kv key of the engine")
	}
	if !validKVLocation(loc) {
		return bad("not the location of a kv key")
	}
	if hashed != strings.HasPrefix(loc, "}") {
		return bad("its form does not match its location")
	}
	if hashed {
		sum := sha256.Sum256([]byte(loc))
		if k[len(im.prefix)+2:len(im.prefix)+18] != hex.EncodeToString(sum[:8]) {
			return bad("its hash tag is not its location's")
		}
	}
	return loc, suffix, nil
}

// validKVLocation reports whether loc is the location key of a kv key
// (Resolve's forms): tenant/apps/app/key, tenant/users/user/key or
// tenant/shared/key, with valid ids and a valid kv key.
func validKVLocation(loc string) bool {
	tenant, rest, ok := strings.Cut(loc, "/")
	if !ok || !validID(tenant) {
		return false
	}
	var key string
	switch {
	case strings.HasPrefix(rest, "apps/"), strings.HasPrefix(rest, "users/"):
		_, rest, _ = strings.Cut(rest, "/")
		var owner string
		if owner, key, ok = strings.Cut(rest, "/"); !ok || !validID(owner) {
			return false
		}
	case strings.HasPrefix(rest, "shared/"):
		key = rest[len("shared/"):]
	default:
		return false
	}
	return len(key) > 0 && len(key) <= maxKVKey && validText(key)
}

// Commit writes every key added; Rollback after it does nothing.
func (im *KVImport) Commit() (KVImportCounts, error) {
	_ = im.put.Close()
	return im.n, im.tx.Commit()
}

// Rollback drops what was added.
func (im *KVImport) Rollback() {
	_ = im.put.Close()
	_ = im.tx.Rollback()
}
