package embedded

import (
	"crypto/rand"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// bigStore is a miniredis holding n random values of size bytes.
func bigStore(tb testing.TB, n, size int) (*miniredis.Miniredis, map[string]string) {
	tb.Helper()
	m := miniredis.NewMiniRedis()
	want := map[string]string{}
	for i := range n {
		v := make([]byte, size)
		rand.Read(v)
		k := "bigkv" + strconv.Itoa(i)
		if err := m.Set(k, string(v)); err != nil {
			tb.Fatal(err)
		}
		want[k] = string(v)
	}
	return m, want
}

// allocated runs f and returns the bytes it allocated (TotalAlloc) and the
// most the live heap (HeapAlloc) rose above its level before f, sampled
// every millisecond.
func allocated(f func()) (total, peak uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var max atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > before.HeapAlloc && ms.HeapAlloc-before.HeapAlloc > max.Load() {
				max.Store(ms.HeapAlloc - before.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, max.Load()
}

// TestKVSnapshotStreams: writing the snapshot of 64 values of 1 MiB
// allocates far less than the store (it streams key by key: at most about
// one value's worth), where it used to copy every value and marshal the
// whole store (base64) in memory, several times the store per snapshot.
// The snapshot still restores every value.
func TestKVSnapshotStreams(t *testing.T) {
	const n, size = 64, 1 << 20
	m, want := bigStore(t, n, size)
	path := filepath.Join(t.TempDir(), KVSnapshot)
	var keys int
	var err error
	total, peak := allocated(func() { keys, err = snapshotKV(m, path) })
	if err != nil || keys != n {
		t.Fatalf("snapshot: %d keys, %v", keys, err)
	}
	t.Logf("snapshot of %d MiB: allocated %d KiB, live heap rose by at most %d KiB", n*size>>20, total>>10, peak>>10)
	if store := uint64(n * size); total > store/4 {
		t.Errorf("the snapshot of a %d MiB store allocated %d MiB; want under a quarter of the store", store>>20, total>>20)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot: %v, %v; want a 0600 file", fi, err)
	}

	m2 := miniredis.NewMiniRedis()
	if got, err := restoreKV(m2, path); err != nil || got != n {
		t.Fatalf("restore: %d keys, %v", got, err)
	}
	got := map[string]string{}
	for _, k := range m2.Keys() {
		got[k], _ = m2.Get(k)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("restored %d keys that differ from the %d written", len(got), len(want))
	}
}

// version1 is a snapshot as the first release wrote it (one JSON
// document made by json.Marshal).
const version1 = `{"version":1,"savedAt":"2026-11-30T12:19:20.204976995Z","keys":[{"key":"aGFzaA==","type":"hash","fields":[["ZgAy","Yg=="],["ZjE=","YQ=="]]},{"key":"awD/","type":"string","value":"AAH+/w=="},{"key":"bGlzdA==","type":"list","items":["eA==","eQ==","eA=="]},{"key":"cGxhaW4=","type":"string","value":"dg=="},{"key":"c2V0","type":"set","items":["bTE=","bTI="]},{"key":"dHRs","type":"string","expireAt":4102444800000,"value":"bGF0ZXI="},{"key":"enNldA==","type":"zset","scores":[["a","1.5"],["b","-2"]]},{"key":"Z29uZQ==","type":"string","expireAt":1000,"value":"eA=="}]}`

// TestKVSnapshotLoadsVersion1: a snapshot written by the first release
// loads, every type with its TTL (an expired key is dropped), and a
// snapshot cut short or that is no snapshot is refused, never half-loaded
// silently.
func TestKVSnapshotLoadsVersion1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KVSnapshot)
	if err := os.WriteFile(path, []byte(version1), 0o600); err != nil {
		t.Fatal(err)
	}
	m := miniredis.NewMiniRedis()
	if n, err := restoreKV(m, path); err != nil || n != 7 {
		t.Fatalf("restore: %d keys, %v; want 7", n, err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %#v, want %#v", name, got, want)
		}
	}
	get := func(k string) string { v, _ := m.Get(k); return v }
	check("plain", get("plain"), "v")
	check("binary", get("k\x00\xff"), "\x00\x01\xfe\xff")
	check("ttl", m.TTL("ttl") > 24*time.Hour, true)
	check("expired", m.Exists("gone"), false)
	check("hash", m.HGet("hash", "f\x002")+m.HGet("hash", "f1"), "ba")
	l, _ := m.List("list")
	check("list", l, []string{"x", "y", "x"})
	s, _ := m.Members("set")
	check("set", s, []string{"m1", "m2"})
	z, _ := m.SortedSet("zset")
	check("zset", z, map[string]float64{"a": 1.5, "b": -2})

	// Written back, it is the same version 1 document (what an older
	// release reads with json.Unmarshal), but for the expired key.
	if _, err := snapshotKV(m, path); err != nil {
		t.Fatal(err)
	}
	var old, again kvSnapshot
	if err := json.Unmarshal([]byte(version1), &old); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatalf("the new snapshot is no version 1 document: %v", err)
	}
	old.Keys = old.Keys[:len(old.Keys)-1] // "gone" expired
	if len(again.Keys) == len(old.Keys) { // "ttl": now + the TTL left, to the millisecond
		if d := again.Keys[5].ExpireAt - old.Keys[5].ExpireAt; d < -1000 || d > 1000 {
			t.Errorf("ttl's expiry moved by %d ms", d)
		}
		again.Keys[5].ExpireAt = old.Keys[5].ExpireAt
	}
	check("rewritten", again.Keys, old.Keys)
	check("version", again.Version, 1)

	for name, bad := range map[string]string{
		"cut short":    version1[:len(version1)/2],
		"not json":     "hello",
		"version 2":    `{"version":2,"keys":[]}`,
		"keys first":   `{"keys":[],"version":1}`,
		"trailing":     version1 + `{}`,
		"unknown type": `{"version":1,"keys":[{"key":"eA==","type":"stream"}]}`,
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if n, err := restoreKV(miniredis.NewMiniRedis(), path); err == nil {
			t.Errorf("%s: restored %d keys, want an error", name, n)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if n, err := restoreKV(miniredis.NewMiniRedis(), path); err != nil || n != 0 {
		t.Errorf("missing snapshot: %d, %v; want an empty store", n, err)
	}
}

// BenchmarkKVSnapshot writes the snapshot of 64 values of 1 MiB; B/op is
// what one snapshot allocates, peak-heap-KiB how far it raised the live
// heap.
func BenchmarkKVSnapshot(b *testing.B) {
	m, _ := bigStore(b, 64, 1<<20)
	path := filepath.Join(b.TempDir(), KVSnapshot)
	b.ReportAllocs()
	var peak uint64
	for b.Loop() {
		_, p := allocated(func() {
			if _, err := snapshotKV(m, path); err != nil {
				b.Fatal(err)
			}
		})
		peak = max(peak, p)
	}
	b.ReportMetric(float64(peak>>10), "peak-heap-KiB")
}

// BenchmarkKVRestore loads that snapshot into an empty miniredis (the
// values themselves are 64 MiB of it).
func BenchmarkKVRestore(b *testing.B) {
	m, _ := bigStore(b, 64, 1<<20)
	path := filepath.Join(b.TempDir(), KVSnapshot)
	if _, err := snapshotKV(m, path); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var peak uint64
	for b.Loop() {
		_, p := allocated(func() {
			if _, err := restoreKV(miniredis.NewMiniRedis(), path); err != nil {
				b.Fatal(err)
			}
		})
		peak = max(peak, p)
	}
	b.ReportMetric(float64(peak>>10), "peak-heap-KiB")
}
