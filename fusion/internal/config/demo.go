package config

// Demo returns the built-in configuration of `make demo`: one receiver, one pipe and one live
// fs view named "demo", ingest key "demo-ingest-key", query and admin key "demo-key", and the
// JSON/HTTP gateway with the web console on DemoHTTPListen.
func Demo() Config {
	c := Default()
	c.Receivers["default"] = Receiver{APIKeys: []APIKey{{Key: "demo-ingest-key", Pipe: "demo"}}}
	c.Pipes["demo"] = Pipe{Receiver: "default", Views: []string{"demo"}}
	c.Views["demo"] = View{Driver: "fs", Schema: "fs", Live: true, QueryKeys: []string{"demo-key"}}
	c.Server.AdminKeys = []string{"demo-key"}
	c.Server.HTTPListen = DemoHTTPListen
	c.Normalize()
	return c
}

// DemoHTTPListen is the demo's gateway and console address.
const DemoHTTPListen = "127.0.0.1:7080"
