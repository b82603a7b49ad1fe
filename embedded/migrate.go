package embedded

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	bolt "go.etcd.io/bbolt"
)

// legacyBoltFile is where earlier versions of httpserver kept the embedded
// S3's objects (gofakes3 on bbolt).
const legacyBoltFile = "files.bolt"

// migrateBolt imports the objects of a files.bolt left by an earlier
// version into the store, one at a time, then renames the file to
// files.bolt.imported so it is imported once. Nothing writes to the bolt
// file meanwhile, so reading gofakes3's values is safe here.
func migrateBolt(s *fileStore, path, bucket string, log *slog.Logger) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	be := s3bolt.New(db)
	ok, err := be.BucketExists(bucket)
	if err != nil {
		return err
	}
	n := 0
	if ok {
		list, err := be.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
		if err != nil {
			return err
		}
		for _, c := range list.Contents {
			obj, err := be.GetObject(bucket, c.Key, nil)
			if err != nil {
				return err
			}
			p, err := s.newPending()
			if err != nil {
				obj.Contents.Close()
				return err
			}
			_, err = copyBuffered(p, obj.Contents)
			obj.Contents.Close()
			if err != nil {
				p.discard()
				return err
			}
			h := &objectHeader{Key: c.Key, ETag: hex.EncodeToString(obj.Hash), Modified: c.LastModified.UTC()}
			for k, v := range obj.Metadata {
				ck := http.CanonicalHeaderKey(k)
				switch {
				case ck == "Content-Type":
					h.ContentType = v
				case strings.HasPrefix(ck, "X-Amz-Meta-"):
					if h.Meta == nil {
						h.Meta = map[string]string{}
					}
					h.Meta[ck] = v
				}
			}
			if err := p.commit(bucket, h, nil); err != nil {
				return err
			}
			n++
		}
	}
	db.Close()
	if err := os.Rename(path, path+".imported"); err != nil {
		return err
	}
	log.Info("embedded S3: imported the objects of "+legacyBoltFile+"; "+legacyBoltFile+".imported can be deleted", "objects", n)
	return nil
}
