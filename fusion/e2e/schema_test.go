package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRoutingBySchema: the agent's pipe declares schema fs version 1 at CreateSession and is
// routed; a session declaring a schema or version its pipe's views do not read is refused at
// creation, FAILED_PRECONDITION with a message naming the pipe or view; one with no schema is
// INVALID_ARGUMENT.
func TestRoutingBySchema(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000) // the agent's session (fs, version 1) was accepted

	for _, tt := range []struct {
		name, req, code, want string
	}{
		{"another schema", `{"agent_id":"x","schema_name":"mysql","schema_version":1}`, "FailedPrecondition",
			`pipe "main" accepts schema "fs", not "mysql"`},
		{"another version", `{"agent_id":"x","schema_name":"fs","schema_version":2}`, "FailedPrecondition",
			`view "files" of pipe "main" driver fs reads schema fs version 1, not version 2`},
		{"no schema", `{"agent_id":"x"}`, "InvalidArgument", "schema_name is required"},
	} {
		out, err := grpcurl(t, "-plaintext", "-H", "authorization: Bearer ingest-key", "-d", tt.req, c.addr, "fustor.v1.SessionService/CreateSession")
		if err == nil || !strings.Contains(out, tt.code) || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %v\n%s\nwant %s saying %q", tt.name, err, out, tt.code, tt.want)
		}
	}
	// The refusals created nothing: the agent's is the only session.
	list, err := c.sessions()
	must(t, err)
	if len(list) != 1 || list[0].Agent != "e2e-agent" {
		t.Errorf("sessions after the refusals: %v", list)
	}
}
