// Package multivar holds Vigil's multivariate streaming models over an agent's feature vector
// (messages, bytes, distinct peers, refusals, errors, … per interval).
//
// HST is streaming half-space trees (Tan, Ting & Liu 2011): Trees random half-space trees of
// fixed Depth over features normalised by bounds learned in a bootstrap window, scoring each
// vector by the mass of the previous window's vectors around it, and calibrating that raw
// score into [0,1] with a detector.Calibrator.
//
//	h, err := multivar.NewHST(multivar.DefaultHSTConfig(8))
//	score := h.Observe(tUnixNano, features) // 0 during the first Window vectors
//	ckpt, _ := h.MarshalBinary()            // restore into a model of the same config
//
// Invariants: deterministic for a Seed (the trees are drawn from it alone, so they are shared
// read-only by every model of the same shape); no goroutines, no clock; memory per model is
// 4·Trees·(2^(Depth+1)−1) + 16·Dim + 16·Calibrator.Window bytes once bootstrapped (10.2 KiB
// with the defaults at Dim 8) plus Window·Dim·8 bytes during the bootstrap.
//
// RRCF is a robust random cut forest (Guha et al. 2016) with optional shingling: every tree
// holds the last TreeSize points, a new point is inserted and the oldest forgotten, and the score
// is its collusive displacement averaged over the trees, calibrated the same way. It keeps every
// tree explicitly (about 2.5 MiB with the defaults at Dim 8), so it suits a few streams
// (vigil detect, node-wide features) rather than one model per agent; its checkpoint carries the
// trees and the random source and is checked node by node on restore.
package multivar
