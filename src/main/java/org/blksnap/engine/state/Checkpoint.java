package org.blksnap.engine.state;

import org.blksnap.engine.tracker.CbtMap;

/**
 * One tracker as a checkpoint holds it.
 *
 * @param map      the maps, numbers, generation and its reason (a copy)
 * @param epoch    the checkpoint epoch: journal records of this epoch or a later one are replayed
 *                 after a crash
 * @param clean    written at a clean stop: the maps are exact and no journal replay is needed
 * @param identity the backing store's identity at a clean stop; null in a running checkpoint
 */
record Checkpoint(CbtMap.Saved map, long epoch, boolean clean, BackingIdentity identity) {
}
