package config

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoValidates(t *testing.T) {
	c := Demo()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// forest adds a forest view "all" fed by pipe demo and a second pipe "second".
func forest(c *Config) {
	c.Views["all"] = View{Driver: DriverForestFS, Schema: "fs", MaxNodes: 10, HotThreshold: DefaultHotThreshold,
		TombstoneTTL: DefaultTombstoneTTL, Members: map[string]string{}}
	p := c.Pipes["demo"]
	p.Views = append(p.Views, "all")
	c.Pipes["demo"] = p
	second := p
	second.Views = []string{"all"}
	c.Pipes["second"] = second
}

// rows adds a rows view "subs" of schema fed by its own pipe "subs" (of the same schema).
func rows(c *Config, schema string) {
	c.Views["subs"] = View{Driver: DriverRows, Schema: schema, MaxNodes: 10, HotThreshold: DefaultHotThreshold,
		TombstoneTTL: DefaultTombstoneTTL}
	c.Pipes["subs"] = Pipe{Receiver: "default", Schema: schema, Views: []string{"subs"}, SessionTimeout: DefaultSessionTimeout,
		QueueSize: DefaultQueueSize}
}

func TestRowsViewValidates(t *testing.T) {
	c := Demo()
	rows(&c, "submissions")
	c.Normalize()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if v := c.Views["subs"]; v.Schema != "submissions" || v.SchemaVersion != 0 {
		t.Fatalf("normalised rows view %+v", v)
	}
}

func TestForestMembers(t *testing.T) {
	c := Demo()
	forest(&c)
	v := c.Views["all"]
	v.Members["demo"] = "storage-1"
	c.Views["all"] = v
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.PipesOf("all"); len(got) != 2 || got[0] != "demo" || got[1] != "second" {
		t.Fatalf("PipesOf = %v", got)
	}
	if c.MemberName("all", "demo") != "storage-1" || c.MemberName("all", "second") != "second" {
		t.Fatal("member names: a label, else the pipe id")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad listen", func(c *Config) { c.Server.Listen = "nope" }, "server.listen"},
		{"unknown view", func(c *Config) { p := c.Pipes["demo"]; p.Views = []string{"x"}; c.Pipes["demo"] = p }, `unknown view "x"`},
		{"unknown pipe of key", func(c *Config) {
			c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: "k", Pipe: "nope"}}}
		}, `unknown pipe "nope"`},
		{"empty key", func(c *Config) {
			c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: "", Pipe: "demo"}}}
		}, "receivers.default.api_keys[0]: empty key"},
		{"bad driver", func(c *Config) { v := c.Views["demo"]; v.Driver = "sql"; c.Views["demo"] = v }, "unknown driver"},
		{"short timeout", func(c *Config) { p := c.Pipes["demo"]; p.SessionTimeout = 1; c.Pipes["demo"] = p }, "session_timeout"},
		{"negative dir bound", func(c *Config) { c.Server.MaxPushDirBytes = -1 }, "server.max_push_dirs and max_push_dir_bytes must not be negative"},
		{"negative push idle", func(c *Config) { c.Server.PushIdleTimeout = -1 }, "server.push_idle_timeout and max_session_timeout"},
		{"sub-second session cap", func(c *Config) { c.Server.MaxSessionTimeout = time.Millisecond }, "max_session_timeout at least 1s"},
		{"pipe schema no view accepts", func(c *Config) { p := c.Pipes["demo"]; p.Schema = "kv"; c.Pipes["demo"] = p },
			`pipes.demo: schema "kv" cannot feed view "demo": driver fs accepts schema fs only`},
		{"members on an fs view", func(c *Config) { v := c.Views["demo"]; v.Members = map[string]string{"demo": "x"}; c.Views["demo"] = v },
			"members are for driver forest-fs views only"},
		{"view listed twice", func(c *Config) { p := c.Pipes["demo"]; p.Views = []string{"demo", "demo"}; c.Pipes["demo"] = p }, "views listed twice"},
		{"member label of a pipe not feeding", func(c *Config) {
			forest(c)
			v := c.Views["all"]
			v.Members["nope"] = "x"
			c.Views["all"] = v
		}, `views.all.members.nope: pipe "nope" does not feed the view`},
		{"two pipes one member", func(c *Config) {
			forest(c)
			v := c.Views["all"]
			v.Members["demo"] = "second"
			c.Views["all"] = v
		}, `pipes demo and second are both member "second"`},
		{"rows view without schema", func(c *Config) { rows(c, ""); c.Normalize() }, "views.subs: driver rows needs schema"},
		{"rows view of schema fs", func(c *Config) { rows(c, "fs") }, "views.subs: driver rows cannot take schema fs"},
		{"rows view fed by a pipe of another schema", func(c *Config) {
			rows(c, "submissions")
			p := c.Pipes["subs"]
			p.Schema = "orders"
			c.Pipes["subs"] = p
		}, `pipes.subs: schema "orders" cannot feed view "subs": it is a rows view of schema "submissions"`},
		{"fs view with a schema version", func(c *Config) { v := c.Views["demo"]; v.SchemaVersion = 2; c.Views["demo"] = v },
			"views.demo: driver fs reads schema fs version 1, not schema_version 2"},
		{"member name with a slash", func(c *Config) {
			forest(c)
			v := c.Views["all"]
			v.Members["demo"] = "a/b"
			c.Views["all"] = v
		}, `member name "a/b" of pipe demo`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want %q", err, tt.want)
			}
		})
	}
}

// TestAcceptsSchema: what each view driver reads, for CreateSession's routing by schema.
func TestAcceptsSchema(t *testing.T) {
	for _, tt := range []struct {
		view    View
		name    string
		version uint32
		want    string // "" = accepted
	}{
		{View{Driver: DriverFS, Schema: "fs"}, "fs", 1, ""},
		{View{Driver: DriverFS, Schema: "fs"}, "fs", 0, ""},
		{View{Driver: DriverForestFS, Schema: "fs"}, "fs", 1, ""},
		{View{Driver: DriverFS, Schema: "fs"}, "fs", 2, "driver fs reads schema fs version 1, not version 2"},
		{View{Driver: DriverForestFS, Schema: "fs"}, "mysql", 1, `accepts schema "fs", not "mysql"`},
		{View{Driver: DriverRows, Schema: "submissions"}, "submissions", 7, ""},
		{View{Driver: DriverRows, Schema: "submissions"}, "submissions", 0, ""},
		{View{Driver: DriverRows, Schema: "submissions", SchemaVersion: 2}, "submissions", 2, ""},
		{View{Driver: DriverRows, Schema: "submissions", SchemaVersion: 2}, "submissions", 1, `reads schema "submissions" version 2, not version 1`},
		{View{Driver: DriverRows, Schema: "submissions"}, "orders", 1, `accepts schema "submissions", not "orders"`},
		{View{Driver: DriverRows, Schema: "submissions"}, "fs", 1, `is a rows view of schema "submissions": it holds generic rows, not fs trees`},
	} {
		err := tt.view.AcceptsSchema(tt.name, tt.version)
		if (tt.want == "") != (err == nil) || (err != nil && err.Error() != tt.want) {
			t.Errorf("%s view, %s v%d: %v, want %q", tt.view.Driver, tt.name, tt.version, err, tt.want)
		}
	}
}
