package app

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestKeyForms: a query key configured by its SHA-256 authenticates with the key itself, an
// ingest key_file and a file: admin key too; a wrong key, or the digest sent as a key, is
// refused. A reload reads the key file again: the rotated key is in force, the old one is
// refused; a key file gone refuses the reload and the keys stay as they were.
func TestKeyForms(t *testing.T) {
	dir := t.TempDir()
	adminFile, ingestFile := filepath.Join(dir, "admin.key"), filepath.Join(dir, "ingest.key")
	write := func(p, k string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(adminFile, "admin-1")
	write(ingestFile, "ingest-from-file")
	d := sha256.Sum256([]byte("query-hashed"))
	hashed := "sha256:" + hex.EncodeToString(d[:])
	r := startReloadable(t, func(c *config.Config) {
		v := c.Views["demo"]
		v.QueryKeys = []string{hashed}
		c.Views["demo"] = v
		c.Server.AdminKeys = []string{"file:" + adminFile}
		c.Receivers["default"] = config.Receiver{APIKeys: []config.APIKey{{KeyFile: ingestFile, Pipe: "demo"}}}
	})
	q := r.views()
	if _, err := q.ListViews(withKey("query-hashed"), &fustorv1.ListViewsRequest{}); err != nil {
		t.Fatalf("the plain key of a sha256: query key: %v", err)
	}
	for _, wrong := range []string{"query-hashed-2", hashed, hex.EncodeToString(d[:]), "demo-key"} {
		if _, err := q.ListViews(withKey(wrong), &fustorv1.ListViewsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("key %q: %v; want Unauthenticated", wrong, err)
		}
	}
	a := r.connectWith(t, "ingest-from-file")
	a.snapshot(t, map[string]uint64{"/a": 1})
	if st, err := q.GetStats(withKey("query-hashed"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"}); err != nil || st.GetFileCount() != 1 {
		t.Fatalf("stats: %v, %v", st, err)
	}
	admin := fustorv1.NewAdminServiceClient(r.conn)
	if _, err := admin.ListPipes(withKey("admin-1"), &fustorv1.ListPipesRequest{}); err != nil {
		t.Fatalf("the file: admin key: %v", err)
	}

	// The configuration is the same; the file's key is not.
	write(adminFile, "admin-2")
	resp, err := admin.Reload(withKey("admin-1"), &fustorv1.ReloadRequest{})
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !slices.Contains(resp.GetChanges(), "api keys changed") {
		t.Fatalf("changes %q lack the rotated key", resp.GetChanges())
	}
	if _, err := admin.ListPipes(withKey("admin-1"), &fustorv1.ListPipesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the rotated-out admin key: %v; want Unauthenticated", err)
	}
	if _, err := admin.ListPipes(withKey("admin-2"), &fustorv1.ListPipesRequest{}); err != nil {
		t.Fatalf("the rotated-in admin key: %v", err)
	}
	// Nothing changed at all: nothing is reported.
	if resp, err := admin.Reload(withKey("admin-2"), &fustorv1.ReloadRequest{}); err != nil || len(resp.GetChanges()) != 0 {
		t.Fatalf("reload of the same keys: %v, %v", resp.GetChanges(), err)
	}

	if err := os.Remove(adminFile); err != nil {
		t.Fatal(err)
	}
	_, err = admin.Reload(withKey("admin-2"), &fustorv1.ReloadRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "server.admin_keys[0]: read key file") {
		t.Fatalf("reload without the key file: %v", err)
	}
	if _, err := admin.ListPipes(withKey("admin-2"), &fustorv1.ListPipesRequest{}); err != nil {
		t.Fatalf("the admin key after a refused reload: %v", err)
	}
	if _, err := r.session().Heartbeat(withKey("ingest-from-file"), &fustorv1.HeartbeatRequest{SessionId: a.id}); err != nil {
		t.Fatalf("the key_file ingest key after the reloads: %v", err)
	}
}
