// Package client is the Go client library of Fustor's Fusion server: typed calls for every
// ViewService RPC and for the AdminService calls an operator's tools need, iterators over
// paged answers (ListDirectoryPages and Entries; Changes, ListChanges by cursor) and streamed
// ones (GetTree and Tree; the change feed Watch, and Follow, which resumes it from its cursor
// when the stream breaks), and errors that keep their gRPC code. fustorctl is built on it.
//
// Connect with New, giving one Fusion address or several replicas' separated by commas
// (queries then balance over the healthy replicas and fail over, see package sdk/dial):
//
//	c, err := client.New("127.0.0.1:7070", client.WithKey("demo-key"))
//	if err != nil { ... }
//	defer c.Close()
//	st, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/"})
//
// Requests and answers are the generated messages of package fustor.v1
// (github.com/fustor/fustor/gen/fustor/v1), so every field of the contract is there as it is
// added. Every error a call returns wraps the server's status with the call and its view and
// path: status.Code(err) and status.FromError(err) still see the gRPC code (NotFound for an
// unknown view or path, Unauthenticated for a missing or unknown key, PermissionDenied for a
// key that may not read the view, Unavailable for a view without a leader, ...).
package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/compress"
	"github.com/fustor/fustor/sdk/dial"
)

// EnvKey is the environment variable New reads the API key from when no WithKey or
// WithKeyFile option is given.
const EnvKey = "FUSTOR_KEY"

// Client is a connection to Fusion (one server or several replicas). It is safe for
// concurrent use; Close releases it.
type Client struct {
	conn    *grpc.ClientConn
	views   fustorv1.ViewServiceClient
	admin   fustorv1.AdminServiceClient
	timeout time.Duration
}

type settings struct {
	creds        credentials.TransportCredentials
	key, keyFile string
	keySet       bool
	getenv       func(string) string
	tls          dial.TLS
	log          *zap.Logger
	compress     bool
	timeout      time.Duration
	dialOpts     []grpc.DialOption
}

// Option configures New.
type Option func(*settings)

// WithKey sends key as the API key (a bearer token) with every call. It wins over WithKeyFile
// and FUSTOR_KEY; an empty key sends none.
func WithKey(key string) Option {
	return func(s *settings) { s.key, s.keySet = key, true }
}

// WithKeyFile reads the API key from the file at path when New runs (its trailing newline is
// not part of the key): a key file keeps the key out of the process list and the shell's
// history. It wins over FUSTOR_KEY.
func WithKeyFile(path string) Option {
	return func(s *settings) { s.keyFile = path }
}

// WithEnv makes New look environment variables (FUSTOR_KEY) up with getenv instead of
// os.Getenv.
func WithEnv(getenv func(string) string) Option {
	return func(s *settings) { s.getenv = getenv }
}

// WithTLS sets the transport security (plaintext unless t says TLS: see dial.TLS; a CA file,
// a client certificate for mutual TLS, a server name). log (nil: none) hears of client
// certificate reloads.
func WithTLS(t dial.TLS, log *zap.Logger) Option {
	return func(s *settings) { s.tls, s.log = t, log }
}

// WithTransportCredentials sets the transport credentials themselves, instead of WithTLS.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(s *settings) { s.creds = creds }
}

// WithCompression asks for every call and answer to be compressed with s2 (package
// sdk/compress): worth it for large answers (trees, finds of thousands of matches) over a
// slow link, a waste of CPU on a fast one. A single call can opt in alone by passing
// grpc.UseCompressor(compress.Name) as a call option.
func WithCompression() Option {
	return func(s *settings) { s.compress = true }
}

// WithCallTimeout bounds each unary call, and each page an iterator asks for, made with a
// context that has no deadline of its own. Streams (GetTree, Watch) are never bounded by it:
// a watch is meant to last. 0 (the default) bounds nothing.
func WithCallTimeout(d time.Duration) Option {
	return func(s *settings) { s.timeout = d }
}

// WithDialOptions adds gRPC dial options (interceptors, a custom dialer, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) { s.dialOpts = append(s.dialOpts, opts...) }
}

// ReadKeyFile reads an API key from a file, its trailing white space trimmed; an empty key is
// an error.
func ReadKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	key := strings.TrimRightFunc(string(b), unicode.IsSpace)
	if key == "" {
		return "", fmt.Errorf("key file %s is empty", path)
	}
	return key, nil
}

// New connects to Fusion at addrs: one host:port, or several replicas' separated by commas.
// The API key comes from WithKey, else WithKeyFile, else the FUSTOR_KEY environment variable.
// New does not wait for the connection: the first call does.
func New(addrs string, opts ...Option) (*Client, error) {
	s := settings{getenv: os.Getenv}
	for _, o := range opts {
		o(&s)
	}
	key := s.key
	switch {
	case s.keySet:
	case s.keyFile != "":
		k, err := ReadKeyFile(s.keyFile)
		if err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
		key = k
	default:
		key = s.getenv(EnvKey)
	}
	creds := s.creds
	if creds == nil {
		var err error
		if creds, err = s.tls.Credentials(s.log); err != nil {
			return nil, fmt.Errorf("new client: %w", err)
		}
	}
	dopts := s.dialOpts
	if key != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer(key)))
	}
	if s.compress {
		dopts = append(dopts, grpc.WithDefaultCallOptions(grpc.UseCompressor(compress.Name)))
	}
	conn, err := dial.Fusion(dial.Addresses(addrs), creds, dopts...)
	if err != nil {
		return nil, fmt.Errorf("new client for %s: %w", addrs, err)
	}
	return NewFromConn(conn, s.timeout), nil
}

// NewFromConn wraps a connection made elsewhere (its credentials and key included); timeout
// is as WithCallTimeout. Close closes conn.
func NewFromConn(conn *grpc.ClientConn, timeout time.Duration) *Client {
	return &Client{conn: conn, views: fustorv1.NewViewServiceClient(conn),
		admin: fustorv1.NewAdminServiceClient(conn), timeout: timeout}
}

// Conn returns the underlying connection, e.g. for the health service.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight fail with Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// bearer sends the API key as "authorization: Bearer KEY", as Fusion expects it. It does not
// require TLS: the demo and tests run plaintext (Fusion warns of it).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// callCtx applies the call timeout to a context without a deadline.
func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// ErrStreamEnded is returned by Watch when the server ends the stream, which it does only as
// it stops: the client is the one that ends a watch. Watch again from the last cursor.
var ErrStreamEnded = errors.New("watch ended by the server")

// Error is a call that failed with a gRPC status: it names the call (and its view and path)
// and keeps the server's status. status.Code(err) and status.FromError(err) see the status
// as the server sent it, message included; errors.Is and errors.As see through it.
type Error struct {
	// Op is the call, its view and its path, e.g. "stat demo /docs/a.txt".
	Op  string
	err error
	st  *status.Status
}

// Error is Op, then the status error's text.
func (e *Error) Error() string { return e.Op + ": " + e.err.Error() }

// Unwrap returns the gRPC status error.
func (e *Error) Unwrap() error { return e.err }

// GRPCStatus returns the server's status, for status.FromError and status.Code.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// wrap names the call in err, keeping the status for status.Code and errors.Is.
func wrap(err error, op, view, path string) error {
	if err == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString(op)
	if view != "" {
		b.WriteString(" " + view)
	}
	if path != "" {
		b.WriteString(" " + path)
	}
	if st, ok := status.FromError(err); ok {
		return &Error{Op: b.String(), err: err, st: st}
	}
	return fmt.Errorf("%s: %w", b.String(), err)
}
