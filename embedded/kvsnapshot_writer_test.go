package embedded

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// snapshotKV is the writer of earlier versions, kept here to make the
// snapshots they left behind: it writes every key of m to path atomically (temp file, fsync,
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
			if strings.Contains(k, "usage:{") {
				continue // the engine's usage, which earlier versions never wrote
			}
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
