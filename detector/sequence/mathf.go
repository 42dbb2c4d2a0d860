package sequence

import "math"

// dot returns Σ a[i]·b[i] over len(a) (b at least as long), unrolled by four.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy adds alpha·x to y.
func axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// expf is e^x in float32 (Cephes' expf: range reduction by ln 2 and a degree-6 polynomial,
// within about 2 ulp over the clamped range [−87, 88]). It is pure arithmetic, so training and
// scoring, on every machine, compute the same value; it is 3–4 times faster than math.Exp here.
func expf(x float32) float32 {
	if x != x { // NaN
		return x
	}
	x = min(max(x, -87), 88)
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	t := x * log2e
	var n int32
	if t >= 0 {
		n = int32(t + 0.5)
	} else {
		n = int32(t - 0.5)
	}
	fn := float32(n)
	r := x - fn*ln2hi - fn*ln2lo
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	return y * math.Float32frombits(uint32(n+127)<<23)
}

func sigmoid(x float32) float32 { return 1 / (1 + expf(-x)) }

func tanh(x float32) float32 { return 2/(1+expf(-2*x)) - 1 }

// matvecAdd adds W·x to y, W having len(y) rows of len(x) values, row-major. Four rows go
// together so that each x[i] is loaded once per four products.
func matvecAdd(w, x, y []float32) {
	n := len(x)
	j := 0
	for ; j+4 <= len(y); j += 4 {
		r0 := w[j*n : (j+1)*n][:len(x)]
		r1 := w[(j+1)*n : (j+2)*n][:len(x)]
		r2 := w[(j+2)*n : (j+3)*n][:len(x)]
		r3 := w[(j+3)*n : (j+4)*n][:len(x)]
		var s0, s1, s2, s3 float32
		for i, v := range x {
			s0 += r0[i] * v
			s1 += r1[i] * v
			s2 += r2[i] * v
			s3 += r3[i] * v
		}
		y[j] += s0
		y[j+1] += s1
		y[j+2] += s2
		y[j+3] += s3
	}
	for ; j < len(y); j++ {
		y[j] += dot(w[j*n:(j+1)*n], x)
	}
}
