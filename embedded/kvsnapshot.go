package embedded

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
//
// It streams: the file is written key by key through a buffered writer,
// each string value base64-encoded in small chunks straight from
// miniredis, so it needs memory for the list of key names and about one
// key's value of another type, never a copy of the store. miniredis is
// locked for one key at a time, not for the whole snapshot.
func snapshotKV(m *miniredis.Miniredis, path string) (int, error) {
	n := 0
	err := writeFileAtomic(path, func(w *bufio.Writer) error {
		now := time.Now()
		savedAt, err := json.Marshal(now.UTC())
		if err != nil {
			return err
		}
		w.WriteString(`{"version":1,"savedAt":`)
		w.Write(savedAt)
		w.WriteString(`,"keys":[`)
		for _, k := range m.Keys() {
			var e kvEntry
			v, ok := readKey(m, k, now, &e)
			if !ok {
				continue
			}
			if n > 0 {
				w.WriteByte(',')
			}
			if e.Type == "string" {
				// v is miniredis' own string: written, not copied to be
				// marshalled.
				w.WriteString(`{"key":`)
				writeBase64(w, k)
				w.WriteString(`,"type":"string"`)
				if e.ExpireAt != 0 {
					w.WriteString(`,"expireAt":`)
					w.WriteString(strconv.FormatInt(e.ExpireAt, 10))
				}
				w.WriteString(`,"value":`)
				writeBase64(w, v)
				w.WriteByte('}')
			} else {
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				w.Write(b)
			}
			n++
		}
		_, err = w.WriteString("]}\n")
		return err // the writer's first error, if any
	})
	return n, err
}

// readKey fills e with key k of m: its type, expiry and contents, except
// a string's value, which it returns instead (snapshotKV streams it). It
// reports false for a key of a type the snapshot leaves out, or one that
// expired or changed type meanwhile.
func readKey(m *miniredis.Miniredis, k string, now time.Time, e *kvEntry) (value string, ok bool) {
	*e = kvEntry{Key: []byte(k), Type: m.Type(k)}
	var err error
	switch e.Type {
	case "string":
		value, err = m.Get(k)
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
		return "", false
	}
	if err != nil {
		return "", false
	}
	if ttl := m.TTL(k); ttl > 0 {
		e.ExpireAt = now.Add(ttl).UnixMilli()
	}
	return value, true
}

// writeBase64 writes s to w as a JSON string of its standard base64 (what
// encoding/json makes of a []byte), through a small buffer.
func writeBase64(w *bufio.Writer, s string) {
	w.WriteByte('"')
	enc := base64.NewEncoder(base64.StdEncoding, w)
	var chunk [3 << 10]byte // a multiple of 3: no padding mid-value
	for len(s) > 0 {
		c := copy(chunk[:], s)
		enc.Write(chunk[:c])
		s = s[c:]
	}
	enc.Close()
	w.WriteByte('"')
}

// writeFileAtomic replaces path with what write writes: a 0600 temporary
// file in the same directory, written through a buffer, fsynced, renamed
// over path, and the directory fsynced. Nothing replaces path if write
// or the buffer fails.
func writeFileAtomic(path string, write func(*bufio.Writer) error) error {
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
	w := bufio.NewWriterSize(tmp, 64<<10)
	if err := write(w); err != nil {
		tmp.Close()
		return err
	}
	if err := w.Flush(); err != nil {
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
//
// It streams: the JSON is decoded token by token and one key at a time,
// so beyond the restored values it needs about one key's worth of memory.
// "version" must come before "keys", as snapshotKV and the first release
// (json.Marshal of kvSnapshot) write them.
func restoreKV(m *miniredis.Miniredis, path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return 0, fmt.Errorf("%s is readable by other users (mode %#o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	dec := json.NewDecoder(f)
	bad := func(err error) (int, error) { return 0, fmt.Errorf("not a kv snapshot: %w", err) }
	delim := func(want json.Delim) error {
		tok, err := dec.Token()
		if err == nil && tok != want {
			err = fmt.Errorf("want %v, got %v", want, tok)
		}
		return err
	}
	if err := delim('{'); err != nil {
		return bad(err)
	}
	now := time.Now()
	version, n := 0, 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		switch tok {
		case "version":
			if err := dec.Decode(&version); err != nil {
				return bad(err)
			}
			if version != 1 {
				return 0, fmt.Errorf("kv snapshot version %d is not supported", version)
			}
		case "keys":
			if version != 1 {
				return 0, errors.New("not a kv snapshot: no version before its keys")
			}
			if err := delim('['); err != nil {
				return bad(err)
			}
			for dec.More() {
				var e kvEntry
				if err := dec.Decode(&e); err != nil {
					return n, fmt.Errorf("not a kv snapshot: %w", err)
				}
				ok, err := restoreKey(m, &e, now)
				if err != nil {
					return n, err
				}
				if ok {
					n++
				}
			}
			if err := delim(']'); err != nil {
				return bad(err)
			}
		default: // savedAt, or a field of a later version
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return bad(err)
			}
		}
	}
	if err := delim('}'); err != nil {
		return bad(err)
	}
	if version != 1 {
		return 0, fmt.Errorf("kv snapshot version %d is not supported", version)
	}
	if _, err := dec.Token(); err != io.EOF {
		return n, errors.New("not a kv snapshot: data after its end")
	}
	return n, nil
}

// restoreKey puts e into m, reporting false for a key that expired.
func restoreKey(m *miniredis.Miniredis, e *kvEntry, now time.Time) (bool, error) {
	var ttl time.Duration
	if e.ExpireAt != 0 {
		if ttl = time.UnixMilli(e.ExpireAt).Sub(now); ttl <= 0 {
			return false, nil
		}
	}
	k := string(e.Key)
	var err error
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
				return false, fmt.Errorf("key %q: bad score %q", k, p[1])
			}
			if _, err = m.ZAdd(k, sc, p[0]); err != nil {
				break
			}
		}
	default:
		return false, fmt.Errorf("key %q: unknown type %q", k, e.Type)
	}
	if err != nil {
		return false, fmt.Errorf("key %q: %w", k, err)
	}
	if ttl > 0 {
		m.SetTTL(k, ttl)
	}
	return true, nil
}
