package dial

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/tlsfiles"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAddresses(t *testing.T) {
	for in, want := range map[string]int{"a:1": 1, "a:1,b:2": 2, " a:1 , b:2 ,": 2, "": 0} {
		if got := Addresses(in); len(got) != want {
			t.Errorf("Addresses(%q) = %v", in, got)
		}
	}
}

// replica is a gRPC server with the health service and a ViewService whose ListViews names
// the replica (a stand-in for Fusion: package sdk does not import fusion).
type replica struct {
	fustorv1.UnimplementedViewServiceServer
	name   string
	srv    *grpc.Server
	health *health.Server
	addr   string
}

func (r *replica) ListViews(context.Context, *fustorv1.ListViewsRequest) (*fustorv1.ListViewsResponse, error) {
	return &fustorv1.ListViewsResponse{Views: []*fustorv1.ViewInfo{{Id: r.name}}}, nil
}

func startReplica(t *testing.T, name string) *replica {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, srv: grpc.NewServer(), health: health.NewServer(), addr: lis.Addr().String()}
	healthpb.RegisterHealthServer(r.srv, r.health)
	fustorv1.RegisterViewServiceServer(r.srv, r)
	go func() { _ = r.srv.Serve(lis) }()
	t.Cleanup(r.srv.Stop)
	return r
}

func TestFailsOverToTheHealthyReplica(t *testing.T) {
	a, b := startReplica(t, "a"), startReplica(t, "b")
	conn, err := Fusion([]string{a.addr, b.addr}, insecure.NewCredentials())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	views := fustorv1.NewViewServiceClient(conn)
	ask := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := views.ListViews(ctx, &fustorv1.ListViewsRequest{})
		if err != nil {
			return "", err
		}
		return resp.GetViews()[0].GetId(), nil
	}
	// Both answer, in turn, once the balancer has connected to both.
	seen := map[string]int{}
	for deadline := time.Now().Add(10 * time.Second); seen["a"] == 0 || seen["b"] == 0; {
		got, err := ask()
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
		if time.Now().After(deadline) {
			t.Fatalf("calls went to %v; want both replicas", seen)
		}
	}
	// a says it stops (as Fusion does on SIGTERM), then goes: no call fails.
	a.health.Shutdown()
	a.srv.GracefulStop()
	for range 200 {
		got, err := ask()
		if err != nil {
			t.Fatalf("a call failed after replica a went: %v", err)
		}
		if got != "b" {
			t.Fatalf("a call answered by %q after replica a went", got)
		}
	}
}

func TestARefusedConnectionIsRetriedOnTheOther(t *testing.T) {
	b := startReplica(t, "b")
	// Nothing listens on the first address.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close()
	conn, err := Fusion([]string{dead, b.addr}, insecure.NewCredentials())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := fustorv1.NewViewServiceClient(conn).ListViews(ctx, &fustorv1.ListViewsRequest{})
		cancel()
		if err != nil {
			t.Fatalf("with one replica down from the start: %v", err)
		}
	}
}

func TestTLSCredentials(t *testing.T) {
	tests := []struct {
		name string
		t    TLS
		want string // the credentials' security protocol; empty: an error
	}{
		{"off", TLS{}, "insecure"},
		{"system roots", TLS{Enabled: true}, "tls"},
		{"a server name means tls", TLS{Client: tlsfiles.Client{ServerName: "fusion.example"}}, "tls"},
		{"a missing ca", TLS{Client: tlsfiles.Client{CAFile: t.TempDir() + "/nope"}}, ""},
		{"a key without its certificate", TLS{Enabled: true, Client: tlsfiles.Client{KeyFile: "k"}}, ""},
	}
	for _, tt := range tests {
		c, err := tt.t.Credentials(nil)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%s: credentials made", tt.name)
		case tt.want != "" && (err != nil || c.Info().SecurityProtocol != tt.want):
			t.Errorf("%s: %v, %v; want %s", tt.name, c, err, tt.want)
		}
	}
}
