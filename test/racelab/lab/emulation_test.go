package lab

import (
	"os"
	"testing"
)

// The emulation both backends load, byte for byte: a change to it shows
// here first (edit testdata/emulation.nft by hand and say why).
func TestEmulationScript(t *testing.T) {
	e := &Emulation{Table: "dgracelab", Service: "10.96.0.10", Every: 10}
	got := e.TableDef() + e.Rule(3, "10.244.0.7") + e.HostRule([]string{"10.96.0.10", "10.200.0.1"}) +
		e.BlockRule(0, "", "192.0.2.53") + e.BlockRule(1, "10.244.0.8", "169.254.20.10")
	want, err := os.ReadFile("testdata/emulation.nft")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("emulation script:\n%s\nwant (testdata/emulation.nft):\n%s", got, want)
	}
}

func TestParseConntrackStats(t *testing.T) {
	data, err := os.ReadFile("testdata/nf_conntrack")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseConntrackStats(string(data))
	if err != nil {
		t.Fatal(err)
	}
	// Two CPUs: insert_failed 0x2 + 0x10, drop 0x1 + 0x0; entries is a
	// gauge, not summed.
	if s["insert_failed"] != 18 || s["drop"] != 1 || s["clashres"] != 5 || s["entries"] != 0 {
		t.Errorf("sums %v", s)
	}
	for _, bad := range []string{"", "entries insert_failed\n", "entries insert_failed\n00000001 zz\n"} {
		if _, err := parseConntrackStats(bad); err == nil {
			t.Errorf("parseConntrackStats(%q) accepted it", bad)
		}
	}
}

func TestParseSpread(t *testing.T) {
	// conntrack -L: the original tuple first, the reply's source (the
	// endpoint DNAT chose) after it.
	out := `udp      17 29 src=10.250.1.2 dst=10.251.0.10 sport=4000 dport=53 src=10.250.2.2 dst=10.250.1.2 sport=53 dport=4000 mark=0 use=1
udp      17 29 src=10.250.1.2 dst=10.251.0.10 sport=4001 dport=53 src=10.250.3.2 dst=10.250.1.2 sport=53 dport=4001 mark=0 use=1
udp      17 29 src=10.250.1.2 dst=10.251.0.10 sport=4002 dport=53 src=10.250.3.2 dst=10.250.1.2 sport=53 dport=4002 mark=0 use=1
udp      17 29 src=10.250.2.2 dst=10.251.0.10 sport=4003 dport=53 src=10.250.9.9 dst=10.250.2.2 sport=53 dport=4003 mark=0 use=1
`
	got := parseSpread(out, []string{"10.250.2.2", "10.250.3.2"})
	// The last line's endpoint is the client, not the reply's source.
	if got["10.250.2.2"] != 1 || got["10.250.3.2"] != 2 {
		t.Errorf("spread %v, want 1 and 2", got)
	}
}
