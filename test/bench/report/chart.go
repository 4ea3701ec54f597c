package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// ChartGroup is one payload size on the chart's x axis.
type ChartGroup struct {
	Label string
	// Values per server, in Servers order; 0 means not measured.
	Values []float64
}

// ChartData are the bars: echoes per second by payload size and server.
func ChartData(res *Results) []ChartGroup {
	sum := Summarize(res.Runs)
	var gs []ChartGroup
	for _, wl := range []struct{ wl, label string }{{Sat64, "64-byte payload"}, {Sat1400, "1400-byte payload"}} {
		g := ChartGroup{Label: wl.label}
		for _, s := range Servers {
			g.Values = append(g.Values, get(sum, s, wl.wl).Rate)
		}
		gs = append(gs, g)
	}
	return gs
}

var barColors = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // kecho: blue
	{0xff, 0x7f, 0x0e, 0xff}, // C: orange
	{0x2c, 0xa0, 0x2c, 0xff}, // Go: green
	{0x99, 0x99, 0x99, 0xff}, // sink: grey
}

// Chart sizes.
const (
	ChartWidth  = 900
	ChartHeight = 520
)

type canvas struct {
	img  *image.RGBA
	face font.Face
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), &image.Uniform{col}, image.Point{}, draw.Src)
}

func (c *canvas) textWidth(s string) int {
	return font.MeasureString(c.face, s).Round()
}

// text draws s with its baseline at y, starting at x (align 0), centred
// on x (1) or ending at x (2).
func (c *canvas) text(x, y int, s string, align int, col color.Color) {
	w := c.textWidth(s)
	switch align {
	case 1:
		x -= w / 2
	case 2:
		x -= w
	}
	d := &font.Drawer{Dst: c.img, Src: &image.Uniform{col}, Face: c.face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// niceStep picks an axis step of 1, 2 or 5 × 10^n giving about n ticks.
func niceStep(maxV float64, ticks int) float64 {
	if maxV <= 0 {
		return 1
	}
	raw := maxV / float64(ticks)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// shortNum formats axis and bar labels: 950, 12.5k, 1.25M.
func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func trimZero(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' && containsDot(s) {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func containsDot(s string) bool {
	for _, c := range s {
		if c == '.' {
			return true
		}
	}
	return false
}

// Chart draws a grouped bar chart of echoes per second: one group per
// payload size, one bar per server, with a y axis, value labels on the
// bars and a legend.
func Chart(title, note string, groups []ChartGroup) *image.RGBA {
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, ChartWidth, ChartHeight)), face: basicfont.Face7x13}
	white, black := color.RGBA{0xff, 0xff, 0xff, 0xff}, color.RGBA{0, 0, 0, 0xff}
	grid, axisText := color.RGBA{0xdd, 0xdd, 0xdd, 0xff}, color.RGBA{0x44, 0x44, 0x44, 0xff}
	c.rect(0, 0, ChartWidth, ChartHeight, white)

	left, right, top, bottom := 80, ChartWidth-230, 50, ChartHeight-60
	c.text(ChartWidth/2, 25, title, 1, black)

	maxV := 0.0
	for _, g := range groups {
		for _, v := range g.Values {
			maxV = math.Max(maxV, v)
		}
	}
	step := niceStep(maxV, 5)
	top5 := step * math.Ceil(maxV/step)
	if top5 == 0 {
		top5 = step
	}
	yOf := func(v float64) int { return bottom - int(math.Round(v/top5*float64(bottom-top))) }
	for t := 0.0; t <= top5+step/2; t += step {
		y := yOf(t)
		c.rect(left, y, right, y+1, grid)
		c.text(left-6, y+4, shortNum(t), 2, axisText)
	}
	c.rect(left, top, left+1, bottom+1, black)
	c.rect(left, bottom, right, bottom+1, black)
	// y axis title, written vertically one letter per line would be hard
	// to read; put it above the axis instead.
	c.text(left-6, top-12, "echoes/s", 0, axisText)

	if len(groups) > 0 {
		groupW := (right - left) / len(groups)
		nb := len(Servers)
		barW := groupW * 3 / (4 * nb)
		for gi, g := range groups {
			gx := left + gi*groupW + groupW/8
			for bi, v := range g.Values {
				x := gx + bi*barW
				col := barColors[bi%len(barColors)]
				if v > 0 {
					c.rect(x+2, yOf(v), x+barW-2, bottom, col)
					c.text(x+barW/2, yOf(v)-4, shortNum(v), 1, black)
				} else {
					c.text(x+barW/2, bottom-4, "n/a", 1, axisText)
				}
			}
			c.text(left+gi*groupW+groupW/2, bottom+20, g.Label, 1, black)
		}
	}

	// Legend.
	lx, ly := right+20, top+10
	for i, s := range Servers {
		c.rect(lx, ly+i*24, lx+14, ly+i*24+14, barColors[i%len(barColors)])
		c.text(lx+20, ly+i*24+11, ServerLabel[s], 0, black)
	}
	c.text(ChartWidth/2, ChartHeight-15, note, 1, axisText)
	return c.img
}

// WriteChart encodes the chart of res as PNG.
func WriteChart(w io.Writer, res *Results) error {
	title := fmt.Sprintf("UDP echoes per second by payload size (kernel %s, %d vCPUs)", res.Kernel, res.GuestCPUs)
	note := fmt.Sprintf("medians of %d rounds, host load %s; emulated CPU (%s): compare bar heights, not absolute rates",
		res.Config.Rounds, res.HostLoad[0], res.Accel)
	return png.Encode(w, Chart(title, note, ChartData(res)))
}
