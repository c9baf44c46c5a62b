// Package dial connects a client to one Fusion or to several replicas of it (issue 16: two
// Fusions serve one fleet, each fed by every agent). With several addresses the connection
// balances calls round-robin over the replicas whose gRPC health service says SERVING (Fusion
// reports NOT_SERVING as it stops), and retries a query that fails UNAVAILABLE on another one:
// gRPC's own client-side load balancing and health checking, no home-made failover.
package dial

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/fustor/fustor/sdk/tlsfiles"
)

// TLS is a client's transport security: plaintext unless Enabled or a file or server name is
// given; then TLS, verifying the server with CAFile (empty: the system roots) and presenting
// CertFile and KeyFile when given (mutual TLS).
type TLS struct {
	Enabled bool
	tlsfiles.Client
}

// On reports whether the connection uses TLS.
func (t TLS) On() bool { return t.Enabled || t.Client != (tlsfiles.Client{}) }

// Credentials returns the transport credentials t describes. log (nil: none) hears of client
// certificate reloads.
func (t TLS) Credentials(log *zap.Logger) (credentials.TransportCredentials, error) {
	if !t.On() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := t.Config(log)
	if err != nil {
		return nil, fmt.Errorf("configure tls: %w", err)
	}
	return credentials.NewTLS(cfg), nil
}

// serviceConfig balances over healthy replicas and retries the read-only services' calls
// that fail UNAVAILABLE (a replica going away): they are safe to ask again. Pushes and
// session calls are not retried here; the agent's sender has its own session protocol.
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{
    "name": [{"service": "fustor.v1.ViewService"}, {"service": "fustor.v1.AdminService"}],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.05s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Addresses splits a --server value: one address, or several separated by commas.
func Addresses(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Fusion returns a client connection to the Fusion replicas at addrs (host:port each).
func Fusion(addrs []string, creds credentials.TransportCredentials, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("dial fusion: no address")
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)
	if len(addrs) == 1 {
		return grpc.NewClient(addrs[0], opts...)
	}
	r := manual.NewBuilderWithScheme("fustor-replicas")
	state := resolver.State{}
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	opts = append(opts, grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(serviceConfig))
	conn, err := grpc.NewClient(r.Scheme()+":///fusion", opts...)
	if err != nil {
		return nil, fmt.Errorf("dial fusion replicas %s: %w", strings.Join(addrs, ","), err)
	}
	return conn, nil
}
