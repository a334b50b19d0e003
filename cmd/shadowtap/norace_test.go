//go:build !race

package main

// raceMemoryFactor allows for the race detector's shadow memory in a
// memory budget: none without -race.
const raceMemoryFactor = 1
