//go:build race

package main

// raceMemoryFactor allows for the race detector's shadow memory in a
// memory budget: a binary built with -race uses several times the memory.
const raceMemoryFactor = 4
