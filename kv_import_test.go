package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKVImportChecks: KVImport takes exactly what the Redis driver writes
// (redisKey's two forms, kvEncode's values, legacy text, nonce hashes) and
// refuses, naming the key, anything else; expired keys are left out and
// nonces dropped; nothing is written without Commit.
func TestKVImportChecks(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	ms := now.UnixMilli()
	r := &redisKV{prefix: "cpod:"}
	hashed := r.redisKey("}t/apps/a/k")
	good := []RedisKey{
		{Key: r.redisKey("t/apps/a/plain"), Type: "string", Value: kvEncode("v", 0, now)},
		{Key: r.redisKey("t/apps/a/ttl"), Type: "string", Value: kvEncode("soon", time.Minute, now), ExpireAt: ms + 60_000 + 40},
		{Key: r.redisKey("t/users/u/a/b"), Type: "string", Value: "legacy text", ExpireAt: ms + 5000},
		{Key: r.redisKey("t/shared/c"), Type: "string", Value: "\xff0:7"},
		{Key: r.redisKey("t/shared/c") + ":nonces", Type: "hash", Fields: [][2]string{{"0123456789abcdef", "7"}}, ExpireAt: ms + 11_000},
		{Key: hashed, Type: "string", Value: kvEncode("brace", 0, now)},
		{Key: r.redisKey("t/apps/a/gone"), Type: "string", Value: kvEncode("x", time.Second, now.Add(-2*time.Second)), ExpireAt: ms - 1000},
	}
	db := openKVTestDB(t)
	ctx := context.Background()
	im, err := NewKVImport(ctx, db, "cpod:", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range good {
		if err := im.Add(ctx, k); err != nil {
			t.Fatalf("%q: %v", k.Key, err)
		}
	}
	n, err := im.Commit()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "counts", n, KVImportCounts{Keys: 5, Expired: 1, Skipped: 1})
	q := newSQLiteKV(newSQLStore(db, slog.New(slog.DiscardHandler)), Config{Now: func() time.Time { return now }})
	for key, want := range map[string]string{
		"t/apps/a/plain": "v -1", "t/apps/a/ttl": "soon 60", "t/users/u/a/b": "legacy text 5", "t/shared/c": "7 -1", "}t/apps/a/k": "brace -1",
	} {
		v, ttl, found, err := q.get(ctx, key)
		if err != nil || !found {
			t.Fatalf("%s: found %v, %v", key, found, err)
		}
		equal(t, key, v+" "+strconv.FormatInt(ttl, 10), want)
	}

	wrongHash := "cpod:}{" + strings.Repeat("0", 16) + "}}t/apps/a/k}"
	sum := sha256.Sum256([]byte("{t/apps/a/k"))
	for name, k := range map[string]RedisKey{
		"other prefix":       {Key: "cpoe:{t/apps/a/k}", Type: "string", Value: "v"},
		"no brace":           {Key: "cpod:t/apps/a/k", Type: "string", Value: "v"},
		"unknown suffix":     {Key: "cpod:{t/apps/a/k}:x", Type: "string", Value: "v"},
		"unknown tier":       {Key: "cpod:{t/app/a/k}", Type: "string", Value: "v"},
		"invalid id":         {Key: "cpod:{t%/apps/a/k}", Type: "string", Value: "v"},
		"empty key":          {Key: "cpod:{t/apps/a/}", Type: "string", Value: "v"},
		"control in key":     {Key: "cpod:{t/apps/a/k\n}", Type: "string", Value: "v"},
		"wrong hash":         {Key: wrongHash, Type: "string", Value: "v"},
		"hash form for {":    {Key: "cpod:}{" + hex.EncodeToString(sum[:8]) + "}{t/apps/a/k}", Type: "string", Value: "v"},
		"plain form for }":   {Key: "cpod:{}t/apps/a/k}", Type: "string", Value: "v"},
		"a list":             {Key: "cpod:{t/apps/a/k}", Type: "list"},
		"a hash value":       {Key: "cpod:{t/apps/a/k}", Type: "hash", Fields: [][2]string{{"a", "b"}}},
		"not UTF-8":          {Key: "cpod:{t/apps/a/k}", Type: "string", Value: "a\xffb"},
		"marker not UTF-8":   {Key: "cpod:{t/apps/a/k}", Type: "string", Value: "\xff0:a\xc3"},
		"expiry only inside": {Key: "cpod:{t/apps/a/k}", Type: "string", Value: kvEncode("v", time.Minute, now)},
		"expiry only Redis":  {Key: "cpod:{t/apps/a/k}", Type: "string", Value: kvEncode("v", 0, now), ExpireAt: ms + 60_000},
		"expiries disagree":  {Key: "cpod:{t/apps/a/k}", Type: "string", Value: kvEncode("v", time.Minute, now), ExpireAt: ms + 60_000 + 6*60_000},
		"Redis' earlier":     {Key: "cpod:{t/apps/a/k}", Type: "string", Value: kvEncode("v", time.Minute, now), ExpireAt: ms + 60_000 - 3000},
		"two years ahead":    {Key: "cpod:{t/apps/a/k}", Type: "string", Value: "v", ExpireAt: ms + 2*365*24*3600*1000},
		"nonce not hex":      {Key: "cpod:{t/apps/a/k}:nonces", Type: "hash", Fields: [][2]string{{"0123456789abcdeg", "1"}}, ExpireAt: ms + 1000},
		"nonce not integer":  {Key: "cpod:{t/apps/a/k}:nonces", Type: "hash", Fields: [][2]string{{"0123456789abcdef", "01"}}, ExpireAt: ms + 1000},
		"nonces forever":     {Key: "cpod:{t/apps/a/k}:nonces:prev", Type: "hash", Fields: [][2]string{{"0123456789abcdef", "1"}}},
		"negative expiry":    {Key: "cpod:{t/apps/a/k}", Type: "string", Value: "v", ExpireAt: -5},
	} {
		im, err := NewKVImport(ctx, db, "", now)
		if err != nil {
			t.Fatal(err)
		}
		err = im.Add(ctx, k)
		im.Rollback()
		if err == nil || !strings.Contains(err.Error(), "key ") {
			t.Errorf("%s: %v, want an error naming the key", name, err)
		}
	}
}
