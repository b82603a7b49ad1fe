package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	storage "github.com/cpod/storage"
)

// kvSnapshot is the file format of the kv snapshot that earlier versions
// wrote (every Config.KVSnapshotInterval and on Close) from miniredis:
// every key of its database 0 with its value and absolute expiry. Byte
// strings are []byte (base64 in JSON): keys and values may be any bytes.
// The format has no checksum.
type kvSnapshot struct {
	Version int       `json:"version"`
	SavedAt time.Time `json:"savedAt"`
	Keys    []kvEntry `json:"keys"`
}

type kvEntry struct {
	Key  []byte `json:"key"`
	Type string `json:"type"` // string, hash, list, set, zset
	// ExpireAt is the expiry in Unix milliseconds; 0 for none.
	ExpireAt int64       `json:"expireAt,omitempty"`
	Value    []byte      `json:"value,omitempty"`  // string
	Items    [][]byte    `json:"items,omitempty"`  // list (in order), set
	Fields   [][2][]byte `json:"fields,omitempty"` // hash: field, value
	Scores   [][2]string `json:"scores,omitempty"` // zset: member, score (strconv 'g', for ±inf)
}

// KVSnapshotImported is what KVSnapshot is renamed to once imported.
const KVSnapshotImported = KVSnapshot + ".imported"

// importKVSnapshot imports the kv snapshot an earlier version left in dir
// into the SQLite store db, once: every key, value and TTL, in one
// transaction, then the file is renamed KVSnapshotImported (or, when that
// exists, KVSnapshotImported.2, .3, ...). The snapshot
// is checked strictly first (see readKVSnapshot): a damaged one stops the
// start, naming the damage, and nothing of it is imported; the file stays
// as it was. Leftover temporary files of an interrupted snapshot write
// (.kv.snapshot.tmp*) are removed. prefix is the engine's Redis key
// prefix when it wrote the snapshot.
func (b *Backends) importKVSnapshot(ctx context.Context, db *sql.DB, prefix string) error {
	tmps, _ := filepath.Glob(filepath.Join(b.dir, "."+KVSnapshot+".tmp*"))
	for _, tmp := range tmps {
		if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing a leftover temporary kv snapshot: %w", err)
		}
		b.log.Info("embedded store: removed a leftover temporary kv snapshot", "file", tmp)
	}
	path := filepath.Join(b.dir, KVSnapshot)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by other users (mode %#o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	im, err := storage.NewKVImport(ctx, db, prefix, time.Now())
	if err != nil {
		return fmt.Errorf("importing %s: %w", path, err)
	}
	if err := readKVSnapshot(f, func(k storage.RedisKey) error { return im.Add(ctx, k) }); err != nil {
		im.Rollback()
		return fmt.Errorf("%s is damaged or is not a kv snapshot of this server (key prefix %q), so none of it was imported: %w; "+
			"restore it from a backup, or move it out of %s to start without those kv values", path, prefix, err, b.dir)
	}
	n, err := im.Commit()
	if err != nil {
		return fmt.Errorf("importing %s: %w", path, err)
	}
	// A data directory upgraded before, then run by an earlier version
	// again, holds a kv.snapshot.imported already: this one gets the next
	// free name (as documents/ does).
	to := filepath.Join(b.dir, KVSnapshotImported)
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s.%d", filepath.Join(b.dir, KVSnapshotImported), i)
	}
	if err := os.Rename(path, to); err != nil {
		return err
	}
	syncDir(b.dir)
	b.log.Info("embedded store: imported the kv snapshot of an earlier version", "keys", n.Keys, "expired", n.Expired,
		"counter nonces dropped", n.Skipped, "from", path, "renamed to", to)
	return nil
}

// readKVSnapshot reads a kv snapshot from r and calls each with every key,
// checking the file strictly as it goes, since the format has no checksum:
// exactly the fields the writers wrote, in their order ({"version":1,
// "savedAt":...,"keys":[...]}, each key with only the fields of its type),
// standard base64 with zero padding bits and no line breaks, keys in
// strictly increasing byte order (miniredis listed them sorted), only the
// types the engine writes (string, and hash for a counter's nonces), and
// nothing after the end. each checks the keys and values themselves
// (storage.KVImport.Add).
//
// It streams: the JSON is decoded token by token and one key at a time.
func readKVSnapshot(r io.Reader, each func(storage.RedisKey) error) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	next := func(want json.Token) error {
		tok, err := dec.Token()
		if err == nil && tok != want {
			err = fmt.Errorf("found %v where %v belongs", tok, want)
		}
		return err
	}
	if err := next(json.Delim('{')); err != nil {
		return err
	}
	if err := next("version"); err != nil {
		return err
	}
	var version int
	if err := dec.Decode(&version); err != nil {
		return err
	}
	if version != 1 {
		return fmt.Errorf("version %d is not supported", version)
	}
	if err := next("savedAt"); err != nil {
		return err
	}
	var savedAt time.Time
	if err := dec.Decode(&savedAt); err != nil {
		return fmt.Errorf("savedAt: %w", err)
	}
	if savedAt.After(time.Now().Add(24 * time.Hour)) {
		return fmt.Errorf("savedAt %s is in the future", savedAt.Format(time.RFC3339))
	}
	if err := next("keys"); err != nil {
		return err
	}
	if err := next(json.Delim('[')); err != nil {
		return err
	}
	var last []byte
	for i := 0; dec.More(); i++ {
		var e rawEntry
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
		k, err := e.redisKey()
		if err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
		if i > 0 && bytes.Compare([]byte(k.Key), last) <= 0 {
			return fmt.Errorf("key %d (%q) is out of order", i, k.Key)
		}
		last = []byte(k.Key)
		if err := each(k); err != nil {
			return err
		}
	}
	if err := next(json.Delim(']')); err != nil {
		return err
	}
	if err := next(json.Delim('}')); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after its end")
	}
	return nil
}

// rawEntry is a kvEntry with its byte strings as the file spells them, to
// be decoded strictly.
type rawEntry struct {
	Key      *string     `json:"key"`
	Type     string      `json:"type"`
	ExpireAt int64       `json:"expireAt"`
	Value    *string     `json:"value"`
	Items    []string    `json:"items"`
	Fields   [][2]string `json:"fields"`
	Scores   [][2]string `json:"scores"`
}

func (e *rawEntry) redisKey() (storage.RedisKey, error) {
	if e.Key == nil {
		return storage.RedisKey{}, errors.New("no key")
	}
	key, err := strictBase64(*e.Key)
	if err != nil {
		return storage.RedisKey{}, fmt.Errorf("key: %w", err)
	}
	k := storage.RedisKey{Key: key, Type: e.Type, ExpireAt: e.ExpireAt}
	if e.ExpireAt < 0 {
		return k, fmt.Errorf("key %q: expireAt %d", key, e.ExpireAt)
	}
	if e.Items != nil || e.Scores != nil {
		return k, fmt.Errorf("key %q: a %s, which the engine never writes", key, e.Type)
	}
	switch e.Type {
	case "string":
		if e.Fields != nil {
			return k, fmt.Errorf("key %q: a string with fields", key)
		}
		if e.Value != nil { // an empty value was left out
			if k.Value, err = strictBase64(*e.Value); err != nil {
				return k, fmt.Errorf("key %q: value: %w", key, err)
			}
		}
	case "hash":
		if e.Value != nil || len(e.Fields) == 0 {
			return k, fmt.Errorf("key %q: a hash without fields", key)
		}
		for _, f := range e.Fields {
			name, err := strictBase64(f[0])
			if err != nil {
				return k, fmt.Errorf("key %q: field: %w", key, err)
			}
			v, err := strictBase64(f[1])
			if err != nil {
				return k, fmt.Errorf("key %q: field %q: %w", key, name, err)
			}
			k.Fields = append(k.Fields, [2]string{name, v})
		}
	default:
		return k, fmt.Errorf("key %q: type %q, which the engine never writes", key, e.Type)
	}
	return k, nil
}

// strictBase64 decodes standard base64 as encoding/json writes it, and
// refuses what encoding/json would let through: line breaks (which it
// skips) and padding bits that are not zero (two spellings of one value).
func strictBase64(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", errors.New("a line break in base64")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
