package main

import (
	"io"
	"strings"
	"testing"

	storage "github.com/cpod/storage"
)

// TestDefaultQuotaSetting: CPOD_DEFAULT_QUOTA / -default-quota, written
// <primitive>.<bytes|count>=<n>[,...], becomes storage.Config.DefaultQuota
// (absent: every limit unlimited); anything else stops the server,
// naming the setting.
func TestDefaultQuotaSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want storage.Quota
	}{
		{nil, nil, storage.Quota{}},
		{[]string{"-default-quota", "files.bytes=1GiB,files.count=1e5,kv.bytes=64MiB"}, nil,
			storage.Quota{Files: storage.Limit{Bytes: 1 << 30, Count: 100000}, KV: storage.Limit{Bytes: 64 << 20}}},
		{nil, map[string]string{"CPOD_DEFAULT_QUOTA": "documents.count=500, documents.bytes=2MB"},
			storage.Quota{Documents: storage.Limit{Bytes: 2e6, Count: 500}}},
		{[]string{"-default-quota=kv.count=7"}, map[string]string{"CPOD_DEFAULT_QUOTA": "kv.count=9"}, storage.Quota{KV: storage.Limit{Count: 7}}},
	} {
		c, err := parseConfig(tc.args, envFunc(tc.env), io.Discard)
		if err != nil {
			t.Errorf("%q %v: %v", tc.args, tc.env, err)
			continue
		}
		if c.DefaultQuota != tc.want {
			t.Errorf("%q %v: DefaultQuota %+v, want %+v", tc.args, tc.env, c.DefaultQuota, tc.want)
		}
	}
	for _, bad := range []string{"files=1", "disk.bytes=1", "files.size=1", "files.bytes=-1", "files.bytes=1PB", "kv.count=1.5", "kv.count=1e19", "files.bytes=9999999TiB"} {
		_, err := parseConfig([]string{"-default-quota", bad}, envFunc(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-default-quota") {
			t.Errorf("-default-quota %q: %v, want an error naming the flag", bad, err)
		}
	}
}
