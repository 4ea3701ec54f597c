package kmatrix

import (
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	es, err := ParseList(strings.NewReader("# comment\n\n5.10 bullseye boot\n 6.12   trixie-backports # newest\n"), "k.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{Series: "5.10", Suite: "bullseye", Boot: true, Line: 3}, {Series: "6.12", Suite: "trixie-backports", Line: 4}}
	if len(es) != len(want) {
		t.Fatalf("got %+v, want %+v", es, want)
	}
	for i := range want {
		if es[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, es[i], want[i])
		}
	}
	if es[1].Name() != "6.12/trixie-backports" {
		t.Errorf("Name() = %q", es[1].Name())
	}
}

func TestParseListErrors(t *testing.T) {
	for in, want := range map[string]string{
		"6 bookworm\n":                    `k.txt:1: series "6" is not MAJOR.MINOR`,
		"6.1\n":                           `k.txt:1: want "SERIES SUITE [boot]"`,
		"6.1 bookworm boot extra\n":       `k.txt:1: want "SERIES SUITE [boot]"`,
		"6.1 Bookworm\n":                  `k.txt:1: suite "Bookworm"`,
		"6.1 bookworm quick\n":            `k.txt:1: unknown flag "quick"`,
		"6.1 bookworm\n#\n6.1 bookworm\n": `k.txt:3: 6.1/bookworm is already listed on line 1`,
		"# nothing\n":                     `k.txt: no kernels listed`,
	} {
		_, err := ParseList(strings.NewReader(in), "k.txt")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseList(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

// The shipped list covers every series the product promises, and boots at
// least 5.10, 6.1, 6.12 and the newest 7.x.
func TestShippedList(t *testing.T) {
	es, err := ReadList("../../kernels.txt")
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]bool{}
	boot := map[string]bool{}
	newest7 := ""
	for _, e := range es {
		series[e.Series] = true
		if e.Boot {
			boot[e.Series] = true
		}
		if strings.HasPrefix(e.Series, "7.") && (newest7 == "" || CompareVersions(e.Series, newest7) > 0) {
			newest7 = e.Series
		}
	}
	for _, s := range []string{"5.10", "6.1", "6.12", "7.2", "7.3"} {
		if !series[s] {
			t.Errorf("kernels.txt lacks series %s", s)
		}
	}
	for _, s := range []string{"5.10", "6.1", "6.12", newest7} {
		if !boot[s] {
			t.Errorf("kernels.txt does not boot series %s", s)
		}
	}
}

func TestFilter(t *testing.T) {
	es := []Entry{{Series: "6.12", Suite: "trixie"}, {Series: "6.12", Suite: "bookworm-backports"}, {Series: "7.3", Suite: "sid"}}
	got, err := Filter(es, []string{"6.12"})
	if err != nil || len(got) != 2 {
		t.Errorf("Filter 6.12 = %v, %v", got, err)
	}
	got, err = Filter(es, []string{"6.12/trixie", "7.3"})
	if err != nil || len(got) != 2 || got[0].Suite != "trixie" || got[1].Series != "7.3" {
		t.Errorf("Filter 6.12/trixie,7.3 = %v, %v", got, err)
	}
	if _, err := Filter(es, []string{"5.4"}); err == nil {
		t.Error("Filter 5.4: no error")
	}
	if got, _ := Filter(es, nil); len(got) != 3 {
		t.Errorf("Filter nil = %v", got)
	}
}

func TestBaseSuite(t *testing.T) {
	for in, want := range map[string]string{
		"bullseye": "bullseye", "bookworm-backports": "bookworm", "trixie-backports": "trixie",
		"bookworm-security": "bookworm", "sid": "sid", "unstable": "sid", "experimental": "sid",
		"bookworm-backports-sloppy": "bookworm",
	} {
		if got := BaseSuite(in); got != want {
			t.Errorf("BaseSuite(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{"bookworm": true, "bullseye": true, "sid": false, "experimental": false, "trixie-backports": false} {
		if got := StableRelease(in); got != want {
			t.Errorf("StableRelease(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.12.117-1", "6.12.117-1", 0},
		{"6.12.95-1~bpo12+1", "6.12.95-1", -1},
		{"7.3~rc7-1~exp1", "7.3.4-1~bpo13+1", -1},
		{"7.3~rc7-1~exp1", "7.3-1", -1},
		{"7.2.12-1~bpo13+1", "7.2.9-1~bpo13+1", 1},
		{"6.1.192-3", "6.1.176-1", 1},
		{"1:5.10", "6.1", 1},
		{"1.0", "1.0a", -1},
		{"1.0a", "1.0+", -1},
		{"10", "9", 1},
		{"1.01", "1.1", 0},
	} {
		got := CompareVersions(c.a, c.b)
		if sign(got) != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want sign %d", c.a, c.b, got, c.want)
		}
		if sign(CompareVersions(c.b, c.a)) != -c.want {
			t.Errorf("CompareVersions(%q, %q) is not antisymmetric", c.b, c.a)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestSeriesOf(t *testing.T) {
	for in, want := range map[string]string{"6.12.117-1": "6.12", "7.3~rc7-1~exp1": "7.3", "5.10.223-1": "5.10", "1:6.1.0": "6.1", "x": ""} {
		if got := SeriesOf(in); got != want {
			t.Errorf("SeriesOf(%q) = %q, want %q", in, got, want)
		}
	}
}
