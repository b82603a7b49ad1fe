package embedded

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// kvSnapshot is the file format of the kv snapshot: every key of
// miniredis' database 0 with its value and absolute expiry, so the time the
// server was down counts against TTLs, as with Redis' RDB. Byte strings are
// []byte (base64 in JSON): keys and values may be any bytes.
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

// snapshotKV writes every key of m to path atomically (temp file, fsync,
// rename, 0600) and returns how many keys it wrote. Keys of types the
// engine never writes (streams, HyperLogLogs) are skipped.
func snapshotKV(m *miniredis.Miniredis, path string) (int, error) {
	now := time.Now()
	snap := kvSnapshot{Version: 1, SavedAt: now.UTC()}
	for _, k := range m.Keys() {
		e := kvEntry{Key: []byte(k), Type: m.Type(k)}
		var err error
		switch e.Type {
		case "string":
			var v string
			v, err = m.Get(k)
			e.Value = []byte(v)
		case "hash":
			var fields []string
			fields, err = m.HKeys(k)
			for _, f := range fields {
				e.Fields = append(e.Fields, [2][]byte{[]byte(f), []byte(m.HGet(k, f))})
			}
		case "list":
			var items []string
			items, err = m.List(k)
			for _, v := range items {
				e.Items = append(e.Items, []byte(v))
			}
		case "set":
			var items []string
			items, err = m.Members(k)
			for _, v := range items {
				e.Items = append(e.Items, []byte(v))
			}
		case "zset":
			var ss map[string]float64
			ss, err = m.SortedSet(k)
			for mem, sc := range ss {
				e.Scores = append(e.Scores, [2]string{mem, strconv.FormatFloat(sc, 'g', -1, 64)})
			}
			sort.Slice(e.Scores, func(i, j int) bool { return e.Scores[i][0] < e.Scores[j][0] })
		default:
			continue
		}
		if err != nil {
			// The key expired or changed type meanwhile.
			continue
		}
		if ttl := m.TTL(k); ttl > 0 {
			e.ExpireAt = now.Add(ttl).UnixMilli()
		}
		snap.Keys = append(snap.Keys, e)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return 0, err
	}
	return len(snap.Keys), writeFileAtomic(path, b)
}

// writeFileAtomic replaces path with data: a 0600 temporary file in the
// same directory, fsynced, renamed over path, and the directory fsynced.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// restoreKV loads the snapshot at path into m (a missing file is an empty
// snapshot) and returns how many keys it restored; expired keys are
// dropped. A snapshot others can read is refused, like the secrets beside it.
func restoreKV(m *miniredis.Miniredis, path string) (int, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return 0, fmt.Errorf("%s is readable by other users (mode %#o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var snap kvSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return 0, fmt.Errorf("not a kv snapshot: %w", err)
	}
	if snap.Version != 1 {
		return 0, fmt.Errorf("kv snapshot version %d is not supported", snap.Version)
	}
	now := time.Now()
	n := 0
	for _, e := range snap.Keys {
		var ttl time.Duration
		if e.ExpireAt != 0 {
			if ttl = time.UnixMilli(e.ExpireAt).Sub(now); ttl <= 0 {
				continue
			}
		}
		k := string(e.Key)
		switch e.Type {
		case "string":
			err = m.Set(k, string(e.Value))
		case "hash":
			fv := make([]string, 0, 2*len(e.Fields))
			for _, f := range e.Fields {
				fv = append(fv, string(f[0]), string(f[1]))
			}
			if len(fv) > 0 {
				m.HSet(k, fv...)
			}
		case "list":
			items := make([]string, len(e.Items))
			for i, v := range e.Items {
				items[i] = string(v)
			}
			if len(items) > 0 {
				_, err = m.Push(k, items...)
			}
		case "set":
			items := make([]string, len(e.Items))
			for i, v := range e.Items {
				items[i] = string(v)
			}
			if len(items) > 0 {
				_, err = m.SetAdd(k, items...)
			}
		case "zset":
			for _, p := range e.Scores {
				sc, perr := strconv.ParseFloat(p[1], 64)
				if perr != nil {
					return n, fmt.Errorf("key %q: bad score %q", k, p[1])
				}
				if _, err = m.ZAdd(k, sc, p[0]); err != nil {
					break
				}
			}
		default:
			return n, fmt.Errorf("key %q: unknown type %q", k, e.Type)
		}
		if err != nil {
			return n, fmt.Errorf("key %q: %w", k, err)
		}
		if ttl > 0 {
			m.SetTTL(k, ttl)
		}
		n++
	}
	return n, nil
}
