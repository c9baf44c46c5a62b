package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// principalEcho answers ListViews with the views the caller's key may read and records the
// principal, so a test sees what the interceptor decided.
type principalEcho struct {
	fustorv1.UnimplementedViewServiceServer
	seen chan *Principal
}

func (e principalEcho) ListViews(ctx context.Context, _ *fustorv1.ListViewsRequest) (*fustorv1.ListViewsResponse, error) {
	p := PrincipalFrom(ctx)
	e.seen <- p
	out := &fustorv1.ListViewsResponse{}
	for v := range p.Views {
		out.Views = append(out.Views, &fustorv1.ViewInfo{Id: v})
	}
	return out, nil
}

func sha256Setting(key string) string {
	d := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(d[:])
}

// TestKeyFormsOverGRPC: a real server whose keys are configured as a sha256: digest, an env:
// variable and a file: accepts each plain key, refuses a wrong key and the digest itself, and
// gives each key a stable KeyID that is neither the key nor its digest.
func TestKeyFormsOverGRPC(t *testing.T) {
	t.Setenv("FUSTOR_TEST_QUERY_KEY", "from-env")
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Demo()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = time.Second
	v := cfg.Views["demo"]
	v.QueryKeys = []string{sha256Setting("hashed-key"), "env:FUSTOR_TEST_QUERY_KEY", "file:" + file}
	cfg.Views["demo"] = v
	cfg.Server.AdminKeys = []string{sha256Setting("admin-key")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ks, err := cfg.Keys()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(nil, cfg.Server, NewKeys(ks), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	echo := principalEcho{seen: make(chan *Principal, 16)}
	fustorv1.RegisterViewServiceServer(srv.GRPC(), echo)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	views := fustorv1.NewViewServiceClient(conn)
	call := func(key string) (*Principal, error) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
		resp, err := views.ListViews(ctx, &fustorv1.ListViewsRequest{})
		if err != nil {
			return nil, err
		}
		if len(resp.GetViews()) != 1 || resp.GetViews()[0].GetId() != "demo" {
			t.Fatalf("key %q reads %v; want view demo", key, resp.GetViews())
		}
		return <-echo.seen, nil
	}
	ids := map[uint64]string{}
	for _, key := range []string{"hashed-key", "from-env", "from-file"} {
		p, err := call(key)
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		again, err := call(key)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256([]byte(key))
		if p.KeyID != again.KeyID || p.KeyID == binary.BigEndian.Uint64(d[:8]) {
			t.Fatalf("key %q: KeyID %x then %x; want stable and not the digest's prefix %x", key, p.KeyID, again.KeyID, d[:8])
		}
		if other, dup := ids[p.KeyID]; dup {
			t.Fatalf("keys %q and %q share KeyID %x", other, key, p.KeyID)
		}
		ids[p.KeyID] = key
	}
	for _, key := range []string{"wrong-key", "hashed-key2", sha256Setting("hashed-key"), sha256Setting("hashed-key")[len("sha256:"):], "admin-key"} {
		if _, err := call(key); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("key %q: %v; want Unauthenticated", key, err)
		}
	}
	// The admin key configured by its digest opens Verify (query or admin key), as a literal would.
	k := NewKeys(ks)
	md := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer admin-key"))
	if actx, err := k.authenticate(md, verifyMethod); err != nil || PrincipalFrom(actx).Kind != KindAdmin {
		t.Fatalf("admin key on Verify: %v", err)
	}
	if _, err := k.authenticate(md, "/fustor.v1.AdminService/ListPipes"); err != nil {
		t.Fatalf("admin key: %v", err)
	}
}

// TestReplaceSwapsKeys: the table Replace installs is the one in force; the old keys stop.
func TestReplaceSwapsKeys(t *testing.T) {
	k := NewKeys(config.KeySet{Admin: map[config.Digest]bool{config.KeyDigest("old"): true}})
	ctx := func(key string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-api-key", key))
	}
	const m = "/fustor.v1.AdminService/ListPipes"
	if _, err := k.authenticate(ctx("old"), m); err != nil {
		t.Fatal(err)
	}
	k.Replace(config.KeySet{Admin: map[config.Digest]bool{config.KeyDigest("new"): true}})
	if _, err := k.authenticate(ctx("old"), m); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old key after Replace: %v", err)
	}
	if _, err := k.authenticate(ctx("new"), m); err != nil {
		t.Fatalf("new key after Replace: %v", err)
	}
}
