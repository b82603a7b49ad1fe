package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// kvKills is how many times TestKVSurvivesSIGKILL kills the server:
//
//	go test ./httpserver -run TestKVSurvivesSIGKILL -args -kv-kills=10
var kvKills = flag.Int("kv-kills", 3, "SIGKILLs of TestKVSurvivesSIGKILL")

// TestKVSurvivesSIGKILL runs the built server on its embedded default,
// with four clients writing kv (a PUT of a new key, an INCR of a shared
// counter, a DELETE of an earlier key), kills it with SIGKILL after a
// random number of acknowledged writes, starts it again on the same data
// directory and reads back: every acknowledged PUT is there with its value
// and TTL, every acknowledged DELETE stays deleted, and the counter holds
// at least the highest value an INCR answered (it never goes backwards, so
// no number is handed out twice) and at most the INCRs sent. Then the next
// round writes on, kills again, and so on.
func TestKVSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir)
	token := setupApp(t, srv, dataDir)
	client := &http.Client{Timeout: 10 * time.Second}
	type result struct {
		status int
		body   string
	}
	send := func(base, method, path, body string) (result, error) {
		req, err := http.NewRequest(method, base+"/v1/storage/kv/"+path, strings.NewReader(body))
		if err != nil {
			return result{}, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			return result{}, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return result{}, err
		}
		return result{res.StatusCode, string(b)}, nil
	}

	var (
		mu       sync.Mutex
		put      = map[string]string{} // acknowledged PUTs: key -> value
		deleted  = map[string]bool{}   // acknowledged DELETEs
		deleting = map[string]bool{}   // DELETEs sent: one in flight at the kill may land or not
		maxCount int64                 // the highest value an INCR answered
		sent     atomic.Int64          // INCRs sent, answered or not
	)
	for round := range *kvKills {
		base := srv.URL
		killAfter := 50 + rand.IntN(250) // acknowledged writes
		var acked atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					value := fmt.Sprintf("value of %s", key)
					ttl := ""
					if i%3 == 0 {
						ttl = `,"ttl":3600`
					}
					r, err := send(base, "PUT", key, `{"value":"`+value+`"`+ttl+`}`)
					if err != nil {
						return // the server is gone
					}
					if r.status != 204 {
						t.Errorf("PUT %s: %d %s", key, r.status, r.body)
						return
					}
					mu.Lock()
					put[key] = value
					mu.Unlock()
					acked.Add(1)

					sent.Add(1)
					if r, err = send(base, "POST", "counter", ""); err != nil {
						return
					}
					var n struct{ Value int64 }
					if r.status != 200 || json.Unmarshal([]byte(r.body), &n) != nil {
						t.Errorf("INCR: %d %s", r.status, r.body)
						return
					}
					mu.Lock()
					maxCount = max(maxCount, n.Value)
					mu.Unlock()
					acked.Add(1)

					if i >= 3 && i%2 == 0 {
						old := fmt.Sprintf("r%d-w%d-%d", round, w, i-3)
						mu.Lock()
						deleting[old] = true
						mu.Unlock()
						if r, err = send(base, "DELETE", old, ""); err != nil {
							return
						}
						if r.status != 204 {
							t.Errorf("DELETE %s: %d %s", old, r.status, r.body)
							return
						}
						mu.Lock()
						deleted[old] = true
						mu.Unlock()
						acked.Add(1)
					}
				}
			}()
		}
		deadline := time.Now().Add(60 * time.Second)
		for acked.Load() < int64(killAfter) && !t.Failed() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d writes acknowledged in 60 s", round, acked.Load())
			}
			time.Sleep(time.Millisecond)
		}
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		srv.wait(t)
		close(stop)
		wg.Wait()
		if t.Failed() {
			return
		}

		srv = startServer(t, dataDir)
		mu.Lock()
		for key, value := range put {
			r, err := send(srv.URL, "GET", key, "")
			if err != nil {
				t.Fatal(err)
			}
			if deleted[key] {
				if r.status != 404 {
					t.Errorf("round %d: %s was deleted (acknowledged) but answers %d %s", round, key, r.status, r.body)
				}
				continue
			}
			if deleting[key] && r.status == 404 {
				continue // its DELETE was in flight at the kill, and landed
			}
			var got struct {
				Value string
				TTL   int64
			}
			if r.status != 200 || json.Unmarshal([]byte(r.body), &got) != nil || got.Value != value {
				t.Errorf("round %d: acknowledged PUT of %s lost: %d %s", round, key, r.status, r.body)
				continue
			}
			var i int
			fmt.Sscanf(key[strings.LastIndexByte(key, '-')+1:], "%d", &i)
			if (i%3 == 0) != (got.TTL > 0) {
				t.Errorf("round %d: %s has ttl %d", round, key, got.TTL)
			}
		}
		r, err := send(srv.URL, "GET", "counter", "")
		if err != nil {
			t.Fatal(err)
		}
		var c struct{ Value string }
		json.Unmarshal([]byte(r.body), &c)
		var count int64
		fmt.Sscanf(c.Value, "%d", &count)
		if r.status != 200 || count < maxCount || count > sent.Load() {
			t.Errorf("round %d: counter %q after the kill; an INCR answered %d, %d were sent", round, r.body, maxCount, sent.Load())
		}
		t.Logf("round %d: killed after %d acknowledged writes; %d keys written, %d deleted, counter %d (highest answered %d, sent %d)",
			round, acked.Load(), len(put), len(deleted), count, maxCount, sent.Load())
		mu.Unlock()
	}
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
