//go:build kechoguest

package guestfault

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kecho-dev/kecho/test/guestutil"
)

// The datagram fuzzer. Each pass loads kecho fresh, sends a random mix of
// datagrams from a peer namespace over a veth pair (MTU 1500, so large
// ones arrive as IPv4/IPv6 fragments) and over loopback, from many
// senders at once, and checks per class:
//
//	echo      ordinary sockets, random sizes 0..max: echoed byte-identical
//	          exactly once (tx_packets/tx_bytes)
//	forged    raw datagrams claiming an unused address on the peer link,
//	          some with trailing bytes beyond the UDP length or (IPv4) no
//	          checksum: the echo goes to the forged address and port,
//	          exactly once, with exactly the UDP payload; a sniffer on the
//	          peer link sees it
//	guarded   source port 0, 7, 9, 13, 17, 19, 37 or 5555, or (IPv6) a
//	          source of :: or a v4-mapped address: never answered,
//	          drop_loop
//	bcast     subnet and limited broadcast, 224.0.0.1, ff02::1, unicast in
//	          a link-layer broadcast/multicast frame: never answered,
//	          drop_bcast
//	badcsum   raw datagrams with a wrong UDP checksum (also fragmented):
//	          never answered, drop_csum
//	stack     what the stack itself must drop (martian sources, a UDP
//	          length beyond the packet, an IPv6 zero checksum, a wrong
//	          checksum on a datagram short enough for the kernel to check
//	          on arrival): kecho never sees it, nothing counted
//
// Afterwards the counters must equal the sums of what each class
// delivered, add up (rx = drops + tx + tx_errors), and no other datagram
// may have left kecho's port.

const (
	// checksumBreak is the kernel's CHECKSUM_BREAK: UDP datagrams up to
	// this length have their checksum verified on arrival.
	checksumBreak = 76
	maxPayload4   = 65507
	maxPayload6   = 65527
	fuzzMagic     = "KEFZ"
)

// fuzzClass names.
const (
	clsEcho    = "echo"
	clsForged  = "forged"
	clsGuarded = "guarded"
	clsBcast   = "bcast"
	clsBadCsum = "badcsum"
	clsStack   = "stack"
)

var fuzzClasses = []string{clsEcho, clsForged, clsGuarded, clsBcast, clsBadCsum, clsStack}

// fuzzTally counts what was sent per class and what kecho should count.
type fuzzTally struct {
	mu     sync.Mutex
	sent   map[string]int
	bytes  map[string]uint64
	expect guestutil.Counters
}

func newTally() *fuzzTally {
	return &fuzzTally{sent: map[string]int{}, bytes: map[string]uint64{}, expect: guestutil.Counters{}}
}

// add records one datagram of class cls with n payload bytes that kecho
// receives (reaches=true) and counts in counter outcome ("" = not counted).
func (f *fuzzTally) add(cls string, n int, outcome string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent[cls]++
	f.bytes[cls] += uint64(n)
	if outcome == "" {
		return
	}
	f.expect["rx_packets"]++
	f.expect["rx_bytes"] += uint64(n)
	f.expect[outcome]++
	if outcome == "tx_packets" {
		f.expect["tx_bytes"] += uint64(n)
	}
}

func (f *fuzzTally) get(counter string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.expect[counter]
}

func fuzzCount(t *testing.T) int {
	if s := os.Getenv("KECHO_FUZZ_DATAGRAMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("KECHO_FUZZ_DATAGRAMS=%q: want a number >= 100", s)
		}
		return n
	}
	return 8000
}

func fuzzSeed(t *testing.T) uint64 {
	if s := os.Getenv("KECHO_FUZZ_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KECHO_FUZZ_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// randSize picks a payload size: edges, mostly small, some fragmented,
// some near the maximum.
func randSize(r *rand.Rand, max int) int {
	switch p := r.IntN(100); {
	case p < 10:
		edges := []int{0, 1, 15, 16, 1472, 1473, 1452, 1453, 8192, max - 1, max}
		return edges[r.IntN(len(edges))]
	case p < 65:
		return r.IntN(1501)
	case p < 90:
		return 1500 + r.IntN(7501)
	default:
		return 9000 + r.IntN(max-9000+1)
	}
}

func randPayload(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randPort is a source port kecho answers: not guarded, not its own.
func randPort(r *rand.Rand) uint16 {
	for {
		p := uint16(1024 + r.IntN(64000))
		if p != echoPort {
			return p
		}
	}
}

// tuneBuffers lets the test sockets and the sniffer have big buffers, so
// that the only place a datagram could get lost is kecho.
func tuneBuffers(t *testing.T) {
	for _, f := range []string{"/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"} {
		if err := os.WriteFile(f, []byte("33554432"), 0); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// udpStat returns a field of the Udp (or Udp6, v6) line of /proc/net/snmp.
func udpStats(t *testing.T) string {
	b, _ := os.ReadFile("/proc/net/snmp")
	var out []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i], "Udp:") && strings.HasPrefix(lines[i+1], "Udp:") {
			h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := 1; j < len(h) && j < len(v); j++ {
				out = append(out, h[j]+"="+v[j])
			}
			break
		}
	}
	return strings.Join(out, " ")
}

// echoSender sends datagrams from one ordinary socket and checks that
// each comes back exactly once, byte-identical.
type echoSender struct {
	id    uint32
	c     *net.UDPConn
	dst   *net.UDPAddr
	max   int
	mu    sync.Mutex
	cond  *sync.Cond
	want  map[uint64][32]byte // seq -> digest of the payload
	tiny  map[string]int      // payloads too short for a sequence number
	seen  map[uint64]int
	inFly int
	bytes int
	errs  []string
	nsent int
}

func newEchoSender(id uint32, c *net.UDPConn, dst *net.UDPAddr, max int) *echoSender {
	s := &echoSender{id: id, c: c, dst: dst, max: max, want: map[uint64][32]byte{}, tiny: map[string]int{}, seen: map[uint64]int{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *echoSender) errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, fmt.Sprintf("sender %d (%v -> %v): ", s.id, s.c.LocalAddr(), s.dst)+fmt.Sprintf(format, args...))
	}
}

// read collects echoes until the socket is closed.
func (s *echoSender) read() {
	buf := make([]byte, 70000)
	for {
		n, from, err := s.c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if from.Port != echoPort {
			s.errorf("datagram from %v, not kecho", from)
			continue
		}
		p := buf[:n]
		s.mu.Lock()
		switch {
		case n >= 16 && string(p[:4]) == fuzzMagic && binary.BigEndian.Uint32(p[4:]) == s.id:
			seq := binary.BigEndian.Uint64(p[8:])
			d, ok := s.want[seq]
			switch {
			case !ok:
				s.errs = append(s.errs, fmt.Sprintf("sender %d: echo of unknown seq %d", s.id, seq))
			case s.seen[seq] > 0:
				s.errs = append(s.errs, fmt.Sprintf("sender %d: seq %d (%d bytes) echoed %d times", s.id, seq, n, s.seen[seq]+1))
			case sha256.Sum256(p) != d:
				s.errs = append(s.errs, fmt.Sprintf("sender %d: seq %d (%d bytes) echoed with different bytes", s.id, seq, n))
			}
			s.seen[seq]++
		case s.tiny[string(p)] > 0:
			s.tiny[string(p)]--
			s.seen[^uint64(0)]++
		default:
			s.errs = append(s.errs, fmt.Sprintf("sender %d: unexpected %d-byte echo %q", s.id, n, p[:min(n, 24)]))
		}
		s.inFly--
		s.bytes -= n
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// send sends one datagram of n bytes, keeping at most 4 datagrams and
// 128 KiB in flight.
func (s *echoSender) send(r *rand.Rand, seq uint64, n int, tally *fuzzTally) bool {
	p := randPayload(r, n)
	s.mu.Lock()
	deadline := time.Now().Add(30 * time.Second)
	for s.inFly >= 4 || (s.inFly > 0 && s.bytes+n > 128<<10) {
		if time.Now().After(deadline) {
			s.errs = append(s.errs, fmt.Sprintf("sender %d: %d echoes (%d bytes) missing for 30s", s.id, s.inFly, s.bytes))
			s.mu.Unlock()
			return false
		}
		go func() { time.Sleep(100 * time.Millisecond); s.cond.Broadcast() }()
		s.cond.Wait()
	}
	if n >= 16 {
		copy(p, fuzzMagic)
		binary.BigEndian.PutUint32(p[4:], s.id)
		binary.BigEndian.PutUint64(p[8:], seq)
		s.want[seq] = sha256.Sum256(p)
	} else {
		s.tiny[string(p)]++
	}
	s.inFly++
	s.bytes += n
	s.nsent++
	s.mu.Unlock()
	if _, err := s.c.WriteToUDP(p, s.dst); err != nil {
		s.errorf("send %d bytes: %v", n, err)
		s.mu.Lock()
		s.inFly--
		s.bytes -= n
		s.mu.Unlock()
		return false
	}
	tally.add(clsEcho, n, "tx_packets")
	return true
}

// drain waits until deadline for the outstanding echoes and reports what
// is missing.
func (s *echoSender) drain(deadline time.Time) []string {
	s.mu.Lock()
	for s.inFly > 0 && time.Now().Before(deadline) {
		go func() { time.Sleep(100 * time.Millisecond); s.cond.Broadcast() }()
		s.cond.Wait()
	}
	defer s.mu.Unlock()
	errs := append([]string(nil), s.errs...)
	missing := 0
	for seq := range s.want {
		if s.seen[seq] == 0 {
			missing++
		}
	}
	for _, n := range s.tiny {
		missing += n
	}
	if missing > 0 {
		errs = append(errs, fmt.Sprintf("sender %d (%v): %d of %d datagrams never echoed", s.id, s.c.LocalAddr(), missing, s.nsent))
	}
	return errs
}

// silentReader fails on anything that arrives on a socket kecho must not
// answer.
func silentReader(c *net.UDPConn, what string, bad *[]string, mu *sync.Mutex) {
	buf := make([]byte, 70000)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		mu.Lock()
		if len(*bad) < 20 {
			*bad = append(*bad, fmt.Sprintf("%s socket %v got %d bytes from %v", what, c.LocalAddr(), n, from))
		}
		mu.Unlock()
	}
}

func TestFuzzDatagrams(t *testing.T) {
	tuneBuffers(t)
	ns := addNS(t, "fz", 1)
	total := fuzzCount(t)
	seed := fuzzSeed(t)
	t.Logf("fuzz: %d datagrams per pass, seed %d (KECHO_FUZZ_SEED to replay)", total, seed)
	for i, bind := range []string{"::", "0.0.0.0"} {
		n := total
		if bind == "0.0.0.0" {
			n = total / 3
		}
		t.Run("bind="+bind, func(t *testing.T) {
			fuzzPass(t, ns, bind, n, seed+uint64(i))
		})
	}
}

func fuzzPass(t *testing.T, ns *netns, bind string, total int, seed uint64) {
	v6 := bind == "::"
	load(t, "bind_addr="+bind, "log_packets=0")
	start := time.Now()
	before := guestutil.ReadCounters(t)
	snmpBefore := udpStats(t)
	tally := newTally()
	sniff := openSniffer(t, ns.name, ns.peerIndex)
	raw := openRawLink(t, ns.name, ns.peerIndex)

	// Ordinary senders.
	var senders []*echoSender
	addSender := func(nsName, network, ip string, dst net.IP, max int) {
		c := udpIn(t, nsName, network, &net.UDPAddr{IP: net.ParseIP(ip)}, false)
		s := newEchoSender(uint32(len(senders)+1), c, &net.UDPAddr{IP: dst, Port: echoPort}, max)
		senders = append(senders, s)
		go s.read()
	}
	for i := 0; i < 3; i++ {
		addSender(ns.name, "udp4", ns.peer4.String(), ns.host4, maxPayload4)
		if v6 {
			addSender(ns.name, "udp6", ns.peer6.String(), ns.host6, maxPayload6)
		}
	}
	addSender("", "udp4", "127.0.0.1", net.ParseIP("127.0.0.1"), maxPayload4)
	if v6 {
		addSender("", "udp6", "::1", net.ParseIP("::1"), maxPayload6)
	}
	echoPorts := map[string]bool{}
	for _, s := range senders {
		echoPorts[s.c.LocalAddr().String()] = true
	}

	// Sockets on guarded ports, and a broadcast sender; none of them may
	// ever receive anything.
	var silentMu sync.Mutex
	var silent []string
	type guardSock struct {
		c   *net.UDPConn
		dst *net.UDPAddr
		max int
	}
	var guards []guardSock
	for _, p := range append(guardedPorts[1:], echoPort) {
		c := udpIn(t, ns.name, "udp4", &net.UDPAddr{IP: ns.peer4, Port: p}, false)
		guards = append(guards, guardSock{c, &net.UDPAddr{IP: ns.host4, Port: echoPort}, maxPayload4})
		if v6 {
			c6 := udpIn(t, ns.name, "udp6", &net.UDPAddr{IP: ns.peer6, Port: p}, false)
			guards = append(guards, guardSock{c6, &net.UDPAddr{IP: ns.host6, Port: echoPort}, maxPayload6})
		}
		if p != echoPort {
			cl := udpIn(t, "", "udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: p}, false)
			guards = append(guards, guardSock{cl, &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: echoPort}, maxPayload4})
		}
	}
	for _, g := range guards {
		go silentReader(g.c, "guarded-port", &silent, &silentMu)
	}
	bc4 := udpIn(t, ns.name, "udp4", &net.UDPAddr{IP: ns.peer4}, true)
	go silentReader(bc4, "broadcast", &silent, &silentMu)
	bcastDsts := []*net.UDPAddr{
		{IP: ns.bcast4, Port: echoPort},
		{IP: net.IPv4bcast, Port: echoPort},
		{IP: net.ParseIP("224.0.0.1"), Port: echoPort},
	}
	var bc6 *net.UDPConn
	if v6 {
		bc6 = udpIn(t, ns.name, "udp6", &net.UDPAddr{IP: net.ParseIP("::")}, false)
		go silentReader(bc6, "multicast", &silent, &silentMu)
	}

	// Forged datagrams: their echoes are expected on the sniffer.
	var fmu sync.Mutex
	forgedWant := map[string]int{}
	forgedSeen := map[string]int{}
	var unexpected []string
	fkey := func(dst net.IP, port uint16, payload []byte) string {
		h := sha256.Sum256(payload)
		return fmt.Sprintf("%s|%d|%d|%x", dst, port, len(payload), h[:8])
	}
	sniffDone := make(chan struct{})
	var sniffWG sync.WaitGroup
	sniffWG.Add(1)
	go func() {
		defer sniffWG.Done()
		for {
			select {
			case <-sniffDone:
				return
			case d := <-sniff.out:
				if d.sport != echoPort {
					continue
				}
				k := fkey(d.dst, d.dport, d.payload)
				fmu.Lock()
				switch {
				case forgedWant[k] > 0:
					forgedSeen[k]++
					if forgedSeen[k] > forgedWant[k] && len(unexpected) < 20 {
						unexpected = append(unexpected, fmt.Sprintf("forged datagram to %v:%d (%d bytes) echoed more than once", d.dst, d.dport, len(d.payload)))
					}
				case echoPorts[net.JoinHostPort(d.dst.String(), strconv.Itoa(int(d.dport)))]:
					// An ordinary sender's echo; its reader checks it.
				default:
					if len(unexpected) < 20 {
						unexpected = append(unexpected, fmt.Sprintf("kecho sent %d bytes to %v:%d, which nobody should get", len(d.payload), d.dst, d.dport))
					}
				}
				fmu.Unlock()
			}
		}
	}()
	forgedPending := func() int {
		fmu.Lock()
		defer fmu.Unlock()
		n := 0
		for k, w := range forgedWant {
			if forgedSeen[k] < w {
				n += w - forgedSeen[k]
			}
		}
		return n
	}

	// waitCounter paces a class by the counter only it moves: at most
	// window datagrams of it waiting in kecho's socket.
	// A class whose counter gets stuck stops sending (and the test
	// fails): the counter is wrong or kecho stopped draining.
	var paceErrs sync.Map // counter -> why it got stuck
	var lastMu sync.Mutex
	lastSent := map[string][]string{}
	pace := func(counter string, window uint64, desc string) bool {
		lastMu.Lock()
		l := append(lastSent[counter], desc)
		if len(l) > int(window)+2 {
			l = l[1:]
		}
		lastSent[counter] = l
		lastMu.Unlock()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := guestutil.ReadCounters(t)[counter] - before[counter]
			if got+window >= tally.get(counter) {
				return true
			}
			if time.Now().After(deadline) {
				lastMu.Lock()
				paceErrs.Store(counter, fmt.Sprintf("%s stuck at %d, %d expected, for 30s; the last datagrams of the class: %s", counter, got, tally.get(counter), strings.Join(lastSent[counter], "; ")))
				lastMu.Unlock()
				return false
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// Split the datagrams among the classes.
	weights := map[string]int{clsEcho: 50, clsForged: 12, clsGuarded: 12, clsBcast: 8, clsBadCsum: 10, clsStack: 8}
	plan := map[string]int{}
	master := rand.New(rand.NewPCG(seed, 0x6b6563686f))
	for i := 0; i < total; i++ {
		x, acc := master.IntN(100), 0
		for _, c := range fuzzClasses {
			acc += weights[c]
			if x < acc {
				plan[c]++
				break
			}
		}
	}

	var wg sync.WaitGroup
	var rawMu sync.Mutex // one raw socket, several classes
	sendRaw := func(u udpSpec, dstMAC net.HardwareAddr) error {
		rawMu.Lock()
		defer rawMu.Unlock()
		return raw.send(u, dstMAC, 1500)
	}
	var errMu sync.Mutex
	var sendErrs []string
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(sendErrs) < 20 {
			sendErrs = append(sendErrs, fmt.Sprintf(format, args...))
		}
	}
	pick := func(r *rand.Rand) (src, dst net.IP, max int) {
		if v6 && r.IntN(2) == 0 {
			return ns.peer6, ns.host6, maxPayload6
		}
		return ns.peer4, ns.host4, maxPayload4
	}

	// echo: the ordinary senders share the class's datagrams.
	wg.Add(len(senders))
	for i, s := range senders {
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(100+i)))
			share := plan[clsEcho] / len(senders)
			if i < plan[clsEcho]%len(senders) {
				share++
			}
			for seq := 0; seq < share; seq++ {
				if !s.send(r, uint64(seq), randSize(r, s.max), tally) {
					return
				}
			}
		}()
	}

	// forged: raw, from an unused address on the peer link.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 1))
		for i := 0; i < plan[clsForged]; i++ {
			u := udpSpec{src: ns.forged4, dst: ns.host4, sport: randPort(r), dport: echoPort, payload: randPayload(r, r.IntN(1401))}
			if v6 && r.IntN(2) == 0 {
				u.src, u.dst = ns.forged6, ns.host6
			} else if r.IntN(6) == 0 {
				u.csum = csumZero
			}
			if r.IntN(6) == 0 {
				u.trailer = randPayload(r, 1+r.IntN(40))
			}
			fmu.Lock()
			forgedWant[fkey(u.src, u.sport, u.payload)]++
			fmu.Unlock()
			if err := sendRaw(u, ns.hostMAC); err != nil {
				fail("forged: %v", err)
				return
			}
			tally.add(clsForged, len(u.payload), "tx_packets")
			for d := time.Now().Add(30 * time.Second); forgedPending() > 8 && time.Now().Before(d); {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()

	// guarded: ordinary sockets on guarded ports, and port 0 raw.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 2))
		bogus6 := []net.IP{net.IPv6unspecified, net.ParseIP("::ffff:" + ns.peer4.String()), net.ParseIP("::ffff:" + ns.host4.String())}
		for i := 0; i < plan[clsGuarded]; i++ {
			var desc string
			if v6 && r.IntN(8) == 0 {
				// A source no sender can have, whose echo would come
				// back to this host: also drop_loop.
				u := udpSpec{src: bogus6[r.IntN(len(bogus6))], dst: ns.host6, sport: randPort(r), dport: echoPort, payload: randPayload(r, randSize(r, maxPayload6))}
				if err := sendRaw(u, ns.hostMAC); err != nil {
					fail("bogus IPv6 source: %v", err)
					return
				}
				tally.add(clsGuarded, len(u.payload), "drop_loop")
				desc = fmt.Sprintf("raw [%v]:%d -> %v, %d bytes", u.src, u.sport, u.dst, len(u.payload))
			} else if r.IntN(len(guards)+2) < 2 {
				src, dst, max := pick(r)
				p := randPayload(r, randSize(r, max))
				u := udpSpec{src: fragSource(ns, src, len(p), 1500), dst: dst, sport: 0, dport: echoPort, payload: p}
				if err := sendRaw(u, ns.hostMAC); err != nil {
					fail("guarded port 0: %v", err)
					return
				}
				tally.add(clsGuarded, len(u.payload), "drop_loop")
				desc = fmt.Sprintf("raw %v:0 -> %v, %d bytes", src, dst, len(u.payload))
			} else {
				g := guards[r.IntN(len(guards))]
				p := randPayload(r, randSize(r, g.max))
				if _, err := g.c.WriteToUDP(p, g.dst); err != nil {
					fail("guarded %v: %v", g.c.LocalAddr(), err)
					return
				}
				tally.add(clsGuarded, len(p), "drop_loop")
				desc = fmt.Sprintf("%v -> %v, %d bytes", g.c.LocalAddr(), g.dst, len(p))
			}
			if !pace("drop_loop", 4, desc) {
				return
			}
		}
	}()

	// bcast and badcsum share the raw socket with the others; stack too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 3))
		for i := 0; i < plan[clsBcast]; i++ {
			p := randPayload(r, r.IntN(3001))
			var desc string
			switch k := r.IntN(5); {
			case k == 0 && v6:
				if _, err := bc6.WriteToUDP(p, &net.UDPAddr{IP: net.ParseIP("ff02::1"), Port: echoPort, Zone: ns.peerIf}); err != nil {
					fail("multicast ff02::1: %v", err)
					return
				}
				desc = fmt.Sprintf("ff02::1%%%s, %d bytes", ns.peerIf, len(p))
			case k == 1:
				// A unicast datagram in a link-layer broadcast (IPv4)
				// or multicast (IPv6) frame.
				u := udpSpec{src: ns.forged4, dst: ns.host4, sport: randPort(r), dport: echoPort, payload: p}
				mac := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
				if v6 && r.IntN(2) == 0 {
					u.src, u.dst = ns.forged6, ns.host6
					mac = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
				}
				if err := sendRaw(u, mac); err != nil {
					fail("link-layer broadcast: %v", err)
					return
				}
				desc = fmt.Sprintf("raw %v -> %v in a frame to %v, %d bytes", u.src, u.dst, mac, len(p))
			default:
				dst := bcastDsts[r.IntN(len(bcastDsts))]
				if _, err := bc4.WriteToUDP(p, dst); err != nil {
					fail("broadcast: %v", err)
					return
				}
				desc = fmt.Sprintf("%v, %d bytes", dst, len(p))
				if v6 && dst.IP.IsMulticast() {
					// IPv4 multicast is not delivered to a dual-stack
					// socket: the stack drops it for kecho.
					tally.add(clsStack, len(p), "")
					continue
				}
			}
			tally.add(clsBcast, len(p), "drop_bcast")
			if !pace("drop_bcast", 4, desc) {
				return
			}
		}
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 4))
		for i := 0; i < plan[clsBadCsum]; i++ {
			src, dst, max := pick(r)
			if r.IntN(2) == 0 {
				src = ns.forged4
				if dst.To4() == nil {
					src = ns.forged6
				}
			}
			sport := randPort(r)
			if r.IntN(4) == 0 {
				sport = uint16(append(guardedPorts, echoPort)[r.IntN(len(guardedPorts)+1)])
			}
			p := randPayload(r, randSize(r, max))
			u := udpSpec{src: fragSource(ns, src, len(p), 1500), dst: dst, sport: sport, dport: echoPort, payload: p, csum: csumBad}
			if err := sendRaw(u, ns.hostMAC); err != nil {
				fail("bad checksum: %v", err)
				return
			}
			if 8+len(u.payload) <= checksumBreak {
				// The stack verifies short datagrams itself (CHECKSUM_BREAK)
				// and drops them before they reach any socket.
				tally.add(clsStack, len(u.payload), "")
				continue
			}
			tally.add(clsBadCsum, len(u.payload), "drop_csum")
			if !pace("drop_csum", 4, fmt.Sprintf("%v:%d -> %v, %d bytes", u.src, u.sport, u.dst, len(u.payload))) {
				return
			}
		}
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 5))
		// (The subnet's broadcast address as a source is not martian to
		// the stack; TestForgedBroadcastSource covers it.)
		martian4 := []net.IP{net.ParseIP("127.0.0.1"), ns.host4, net.IPv4zero, net.ParseIP("224.1.2.3"), net.IPv4bcast}
		martian6 := []net.IP{net.ParseIP("::1"), net.ParseIP("ff02::1")}
		for i := 0; i < plan[clsStack]; i++ {
			u := udpSpec{src: ns.peer4, dst: ns.host4, sport: randPort(r), dport: echoPort, payload: randPayload(r, r.IntN(1401))}
			switch k := r.IntN(4); {
			case k == 0:
				u.short = true // UDP length beyond the packet
				if v6 && r.IntN(2) == 0 {
					u.src, u.dst = ns.peer6, ns.host6
				}
			case k == 1 && v6:
				u.src, u.dst, u.csum = ns.peer6, ns.host6, csumZero
			case k == 2 && v6:
				u.src, u.dst = martian6[r.IntN(len(martian6))], ns.host6
			default:
				u.src = martian4[r.IntN(len(martian4))].To4()
			}
			if err := sendRaw(u, ns.hostMAC); err != nil {
				fail("stack-dropped: %v", err)
				return
			}
			tally.add(clsStack, len(u.payload), "")
			time.Sleep(time.Millisecond)
		}
	}()

	progress := make(chan struct{})
	go func() {
		tick := time.NewTicker(15 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-progress:
				return
			case <-tick.C:
				tally.mu.Lock()
				t.Logf("progress after %v: sent %v; kecho so far: %v", time.Since(start).Round(time.Second), tally.sent, guestutil.ReadCounters(t).Sub(before))
				tally.mu.Unlock()
			}
		}
	}()
	wg.Wait()
	close(progress)
	var problems []string
	drainBy := time.Now().Add(60 * time.Second)
	for _, s := range senders {
		problems = append(problems, s.drain(drainBy)...)
	}
	for d := time.Now().Add(30 * time.Second); forgedPending() > 0 && time.Now().Before(d); {
		time.Sleep(20 * time.Millisecond)
	}
	got := settled(t, time.Second).Sub(before)
	time.Sleep(500 * time.Millisecond) // late echoes to the sniffer and the silent sockets
	close(sniffDone)
	sniffWG.Wait()
	elapsed := time.Since(start)

	problems = append(problems, sendErrs...)
	paceErrs.Range(func(_, v any) bool {
		problems = append(problems, "pacing: "+v.(string))
		return true
	})
	silentMu.Lock()
	problems = append(problems, silent...)
	silentMu.Unlock()
	fmu.Lock()
	problems = append(problems, unexpected...)
	missing := 0
	for k, w := range forgedWant {
		if forgedSeen[k] < w {
			missing += w - forgedSeen[k]
		}
	}
	if missing > 0 {
		problems = append(problems, fmt.Sprintf("%d forged datagrams never echoed to their forged source", missing))
	}
	fmu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}

	if got["rx_packets"] < tally.expect["rx_packets"] {
		// Were the missing datagrams lost, or left in kecho's socket
		// until the next one arrives? One more datagram tells.
		c := udpIn(t, "", "udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")}, false)
		if _, err := c.WriteToUDP([]byte("nudge"), &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: echoPort}); err != nil {
			t.Fatal(err)
		}
		after := settled(t, time.Second).Sub(before)
		if n := after["rx_packets"] - got["rx_packets"]; n > 1 {
			t.Errorf("%d datagrams sat unserved in kecho's socket until one more arrived (counters then: %v)", n-1, after)
		} else {
			t.Logf("one more datagram moved rx_packets by %d: the %d missing datagrams never reached kecho's socket", n, tally.expect["rx_packets"]-got["rx_packets"])
		}
	}
	for _, c := range []string{"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drop_loop", "drop_bcast", "drop_csum", "drop_ratelimit", "tx_errors", "rx_errors"} {
		if got[c] != tally.expect[c] {
			t.Errorf("counter %s: kecho says %d, the datagrams sent make %d", c, got[c], tally.expect[c])
		}
	}
	conservation(t, "after the fuzz pass", got)
	if t.Failed() {
		t.Logf("kernel UDP statistics before: %s", snmpBefore)
		t.Logf("kernel UDP statistics after:  %s", udpStats(t))
		for _, f := range []string{"/proc/net/snmp", "/proc/net/snmp6", "/proc/net/softnet_stat"} {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", f, b)
		}
	}

	var fig []string
	sum := 0
	for _, c := range fuzzClasses {
		fig = append(fig, fmt.Sprintf("%s %d (%d bytes)", c, tally.sent[c], tally.bytes[c]))
		sum += tally.sent[c]
	}
	sort.Strings(fig)
	t.Logf("FIGURE fuzz bind=%s: %d datagrams in %.1fs: %s; counters: %v; sniffer saw %d fragments",
		bind, sum, elapsed.Seconds(), strings.Join(fig, ", "), got, sniff.frags)
}
