package storage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// An export is a tar (application/x-tar) of everything under a user's
// user-tier location:
//
//	documents/<collection>.jsonl  one {"key","value"} a line, by key
//	kv.jsonl                      one {"key","value","ttl"} a line
//	files/<path>                  each file's bytes
//
// A tar header states its entry's size before the bytes, so the documents
// and kv lines are first written to a spool (memory up to spoolMemory, then
// an unnamed-on-close temporary file), read from a cursor and from the kv
// store a batch at a time; then the answer starts, and the files are
// streamed from S3 one after the other, each with the size of its GET. So
// the heap holds one batch, the spool's memory part and one copy buffer,
// whatever the export's size. A backend failure before the answer starts is the usual error
// answer; after it, the connection is cut (the tar has no end marker), and
// the failure is logged.

// spoolMemory is how much of an export's documents and kv lines are held in
// memory before the spool moves to a temporary file.
const spoolMemory = 4 << 20

// spool holds bytes written once and read back by sections.
type spool struct {
	mem  bytes.Buffer
	f    *os.File
	w    *bufio.Writer // in front of f
	size int64
}

func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.mem.Len()+len(p) > spoolMemory {
		f, err := os.CreateTemp("", "cpod-export-*")
		if err != nil {
			return 0, err
		}
		s.f, s.w = f, bufio.NewWriterSize(f, 64<<10)
		if _, err := s.w.Write(s.mem.Bytes()); err != nil {
			return 0, err
		}
		s.mem = bytes.Buffer{}
	}
	var n int
	var err error
	if s.w != nil {
		n, err = s.w.Write(p)
	} else {
		n, err = s.mem.Write(p)
	}
	s.size += int64(n)
	return n, err
}

// section returns the bytes [off, off+n); the spool must be flushed.
func (s *spool) section(off, n int64) io.Reader {
	if s.f != nil {
		return io.NewSectionReader(s.f, off, n)
	}
	return bytes.NewReader(s.mem.Bytes()[off : off+n])
}

func (s *spool) flush() error {
	if s.w != nil {
		return s.w.Flush()
	}
	return nil
}

func (s *spool) close() {
	if s.f != nil {
		_ = s.f.Close()
		_ = os.Remove(s.f.Name())
	}
}

// spoolEntry is one tar entry held in the spool.
type spoolEntry struct {
	name      string
	off, size int64
}

// export answers GET .../export for the location prefix.
func (e *Engine) export(c *call, prefix string) error {
	sp := &spool{}
	defer sp.close()
	var entries []spoolEntry
	if err := e.exportDocuments(c.ctx, prefix, sp, &entries); err != nil {
		return err
	}
	start := sp.size
	if err := e.exportKV(c.ctx, prefix, sp); err != nil {
		return err
	}
	entries = append(entries, spoolEntry{name: "kv.jsonl", off: start, size: sp.size - start})
	if err := sp.flush(); err != nil {
		return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("export spool: %w", err)}
	}

	h := c.w.Header()
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Disposition", `attachment; filename="export.tar"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	c.w.WriteHeader(http.StatusOK)
	tw := tar.NewWriter(c.w)
	now := e.now().UTC().Truncate(time.Second)
	for _, en := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: en.name, Size: en.size, Mode: 0o644, ModTime: now}); err != nil {
			e.abortExport(c, err)
		}
		if _, err := io.Copy(tw, sp.section(en.off, en.size)); err != nil {
			e.abortExport(c, err)
		}
	}
	sp.close()
	if err := e.exportFiles(c, prefix, tw); err != nil {
		e.abortExport(c, err)
	}
	if err := tw.Close(); err != nil {
		e.abortExport(c, err)
	}
	return nil
}

// abortExport ends an export whose answer has started: the connection is
// cut, so the client sees a truncated tar, never a complete-looking one.
func (e *Engine) abortExport(c *call, err error) {
	if c.ctx.Err() == nil {
		e.log.Warn("storage: export interrupted", "request_id", c.reqID, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// exportDocuments writes the lines of every collection under prefix to sp,
// one entry per collection, in name order.
func (e *Engine) exportDocuments(ctx context.Context, prefix string, sp *spool, entries *[]spoolEntry) error {
	// The current entry, started at the first document of a collection.
	coll, start := "", int64(0)
	seen := map[string]bool{}
	end := func() {
		if coll != "" {
			*entries = append(*entries, spoolEntry{name: "documents/" + coll + ".jsonl", off: start, size: sp.size - start})
		}
	}
	line := func(cl, key string, js []byte) error {
		if cl != coll {
			end()
			if seen[cl] {
				return &Error{Code: CodeInternal, Message: "internal error", Err: errors.New("export: a collection's documents are not contiguous")}
			}
			seen[cl] = true
			coll, start = cl, sp.size
		}
		b := itemJSON(make([]byte, 0, len(key)+len(js)+32), key, js)
		_, err := sp.Write(append(b, '\n'))
		return err
	}
	if err := e.docs.store.scan(ctx, prefix, line); err != nil {
		return err
	}
	end()
	return nil
}

// scanDocuments calls each with the documents of pc that match filter, in
// _id order, each round trip bounded by BackendTimeout.
func (d *documents) scanDocuments(ctx context.Context, pc *mongo.Collection, filter bson.D, each func(bson.Raw) error) error {
	bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	cur, err := pc.Find(bctx, filter, options.Find().
		SetSort(bson.D{{Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: fieldLoc, Value: 1}, {Key: fieldColl, Value: 1}, {Key: fieldKey, Value: 1}, {Key: fieldJSON, Value: 1}}).
		SetBatchSize(500))
	cancel()
	if err != nil {
		return docsBackendError("documents export", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for {
		bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
		ok := cur.Next(bctx)
		cancel()
		if !ok {
			break
		}
		if err := each(cur.Current); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return docsBackendError("documents export", err)
	}
	return nil
}

// exportKV writes one line per kv key under prefix to sp: its key
// relative to the location, its value and its TTL in seconds (-1 for none).
// A key that expires or goes meanwhile is left out.
func (e *Engine) exportKV(ctx context.Context, prefix string, sp *spool) error {
	return e.kv.scan(ctx, prefix, func(key, value string, ttl int64) error {
		line, err := json.Marshal(struct {
			Key   string `json:"key"`
			Value string `json:"value"`
			TTL   int64  `json:"ttl"`
		}{key[len(prefix):], value, ttl})
		if err != nil {
			return &Error{Code: CodeInternal, Message: "internal error", Err: err}
		}
		if _, err := sp.Write(append(line, '\n')); err != nil {
			return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("export spool: %w", err)}
		}
		return nil
	})
}

// exportFiles streams every file under prefix into tw as files/<path>.
func (e *Engine) exportFiles(c *call, prefix string, tw *tar.Writer) error {
	after := ""
	for {
		page, err := e.listPage(c.ctx, prefix, after, eraseBatch)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].Key
		for _, obj := range page {
			rel := obj.Key[len(prefix):]
			if checkFilePath(rel) != nil {
				continue // the engine writes no such key; never into a tar
			}
			if err := e.exportFile(c, obj.Key, "files/"+rel, tw); err != nil {
				return err
			}
		}
	}
}

// exportFile streams one object into tw; one deleted since the listing is
// left out.
func (e *Engine) exportFile(c *call, key, name string, tw *tar.Writer) error {
	body, info, err := e.openObject(c, key, minio.GetObjectOptions{})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer body.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: info.Size, Mode: 0o644, ModTime: info.LastModified.UTC()}); err != nil {
		return err
	}
	n, err := io.Copy(clientWriter{tw, body.g}, body)
	if err == nil && n != info.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && body.g.stalled() {
		err = errS3Stalled
	}
	return err
}
