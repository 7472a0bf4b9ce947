# Mirrored-volume simulator sweeps: `keel sim --volume --seeds A:B` (each seed two replicas of a
# 256 KiB..4 MiB volume and a witness, a workload on the primary, link breaks, partitions,
# process crashes and power losses with restarts, failover, sometimes a forced split brain, bursts
# of disk errors (EIO) and online verifies; every guarantee of src/sim/volume_scenario.hpp
# checked, then a heal and a convergence check) in two shards of 1,000 seeds, and a check that a
# seed run twice with --trace prints byte-identical output (a failing seed replays). About 35 s of
# CPU in all. Included from tests/CMakeLists.txt.
#
# This file is also the replay check's script:
#   cmake -DKEEL=<keel> -DSEED=<seed> -DWORK_DIR=<dir> -P volume_sweeps.cmake
if(CMAKE_SCRIPT_MODE_FILE)
  foreach(run 1 2)
    execute_process(COMMAND ${KEEL} sim --volume --seed ${SEED} --trace
                    OUTPUT_FILE ${WORK_DIR}/volume_replay_${SEED}_${run}.txt
                    RESULT_VARIABLE code_${run})
  endforeach()
  file(SHA256 ${WORK_DIR}/volume_replay_${SEED}_1.txt first)
  file(SHA256 ${WORK_DIR}/volume_replay_${SEED}_2.txt second)
  file(SIZE ${WORK_DIR}/volume_replay_${SEED}_1.txt size)
  if(NOT code_1 STREQUAL "0" OR NOT code_2 STREQUAL "0")
    message(FATAL_ERROR "volume_replay_identical: exit codes ${code_1} and ${code_2}, want 0")
  endif()
  if(NOT first STREQUAL second)
    message(FATAL_ERROR "volume_replay_identical: seed ${SEED} printed different output twice; "
                        "compare ${WORK_DIR}/volume_replay_${SEED}_1.txt and _2.txt")
  endif()
  if(size LESS 10000)
    message(FATAL_ERROR "volume_replay_identical: output suspiciously short (${size} bytes)")
  endif()
  message(STATUS "volume_replay_identical: seed ${SEED}: ${size} bytes, identical")
  return()
endif()

set(keel_volume_seeds_per_shard 1000)
foreach(shard RANGE 0 1)
  math(EXPR first "${shard} * ${keel_volume_seeds_per_shard}")
  math(EXPR last "${first} + ${keel_volume_seeds_per_shard}")
  add_test(NAME volume_sweep_${shard}
           COMMAND $<TARGET_FILE:keel> sim --volume --seeds ${first}:${last})
  set_tests_properties(volume_sweep_${shard} PROPERTIES TIMEOUT 300 LABELS sim)
endforeach()

# Volumes of 2..8 activity-log extents, so that eviction runs under power losses (the default
# volumes are one extent at most). 500 seeds, about 10 s; seed 357 is among them.
add_test(NAME volume_sweep_large COMMAND $<TARGET_FILE:keel> sim --volume --large-volumes
                                         --seeds 0:500)
set_tests_properties(volume_sweep_large PROPERTIES TIMEOUT 300 LABELS sim)
# The witness's agent crashing and restarting from its records file in a fifth of the runs.
# 1,000 seeds, about 30 s.
add_test(NAME volume_sweep_witness_crashes
         COMMAND $<TARGET_FILE:keel> sim --volume --witness-crashes --seeds 0:1000)
set_tests_properties(volume_sweep_witness_crashes PROPERTIES TIMEOUT 300 LABELS sim)
# Seeds of that sweep that once failed:
#   2131: each copy was told outdated by an obsolete record of the other's (a promotion fed the
#             records before their withdrawals arrived); both stayed Outdated on one generation.
#   11374: the primary lost power while its peer was down Inconsistent (in the middle of a
#             resync); the model counted the peer as in sync and wanted the primary's unflushed
#             writes, which the resync from the only full copy overwrote.
foreach(seed 2131 11374)
  add_test(NAME volume_witness_seed_${seed}
           COMMAND $<TARGET_FILE:keel> sim --volume --witness-crashes --seed ${seed})
  set_tests_properties(volume_witness_seed_${seed} PROPERTIES TIMEOUT 60 LABELS sim)
endforeach()
# Large-volume seeds that once failed:
#   21400, 27200: a write failed on the secondary while a resync pass ended; its error reached the
#             source after ResyncDone, and the secondary took ResyncDone for UpToDate without it.
#   1937, 3587: a secondary's failed checkpoint flush dropped writes of the next epoch, whose own
#             barrier then succeeded; the resync left them out.
#   4027: a primary stepping down after a failed flush lost the link, had its peer recorded
#             outdated and acknowledged a write on its own copy, which the peer's overwrote.
foreach(seed 21400 27200 1937 3587 4027)
  add_test(NAME volume_large_seed_${seed}
           COMMAND $<TARGET_FILE:keel> sim --volume --large-volumes --seed ${seed})
  set_tests_properties(volume_large_seed_${seed} PROPERTIES TIMEOUT 60 LABELS sim)
endforeach()

# Seed 50: a forced promotion on the minority side, the split brain refused, resolved and resynced.
add_test(NAME volume_replay_identical
         COMMAND ${CMAKE_COMMAND} -DKEEL=$<TARGET_FILE:keel> -DSEED=50
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR} -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(volume_replay_identical PROPERTIES TIMEOUT 120 LABELS sim)
# Seed 189: disk errors on both nodes (failed writes, reads, flushes) and two online verifies.
add_test(NAME volume_replay_identical_disk_errors
         COMMAND ${CMAKE_COMMAND} -DKEEL=$<TARGET_FILE:keel> -DSEED=189
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR} -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(volume_replay_identical_disk_errors PROPERTIES TIMEOUT 120 LABELS sim)

# Seeds that once failed, kept as regressions (each names what it caught).
#   93000550: a write into an extent whose activity-log update was still being persisted went to
#             disk first; two power losses later the copies differed after the resync.
#   93000723: a resync source told the target its new generations before they were on its own
#             disk; after a power loss and a promotion it was refused as the older copy forever.
#   93004100: the link broke after the resync's ResyncDone, before the peer's UpToDate came back;
#             the primary took the record its peer had caught up with for a valid one and
#             acknowledged writes alone, and the peer was promoted without them.
#   95066770: a resync source's copy held data only in its cache (from before a process crash);
#             it declared the copies equal, lost power, and they differed.
#   93006209, 93010628: the primary lost power with acknowledged writes not yet flushed, and came
#             back before its peer was promoted; the resync of its activity-log extents went
#             from it and overwrote the peer's copy of those writes.
#   93000079: (a simulator fix) a node's announcement in a minority erased the majority's record
#             of its peer being outdated; with records kept per partition, 1609 and 1858 of the
#             sweep above showed stale records leaving in-sync copies Outdated.
#   99503303, 99010907, 99511675: a block the primary wrote during the handshake, after the
#             bitmaps were exchanged, was resynced into a target whose bitmap did not name it; the
#             source cleared it on the target's ack, and the target's power loss lost it for both.
#   99000776: the primary lost power during a resync with acknowledged writes not yet flushed;
#             the target held them, but its copy was Inconsistent and the resync that followed,
#             from the primary, overwrote them.
#   101029428: (a simulator fix) a write submitted during the handshake and acknowledged after
#             replication began was counted as held by the peer, which never received it.
#   9310518: (a simulator fix) the cut-off node was forced primary before it had heard that its
#             link was gone, while the peer's promotion was still in flight to it: two
#             promotions racing on one link, not the fault meant; the force now waits for that.
#   5, 13: a write that failed on the secondary's disk, or on the primary's, marked its blocks,
#             and nothing copied them until the link broke: never in sync again after the heal.
#   189: a resync chunk's ack cleared blocks that a write failing after the chunk's read had
#             marked; both sides showed in sync with the copies different.
#   328: a resync source's failed flush marked the primary Inconsistent; the next connection
#             full-synced it from its outdated peer and acknowledged writes were lost.
#   1405: reads failing on the secondary during verify were reported as differing blocks.
#   3423: a resync target's failed flush on ResyncDone left it Inconsistent while connected.
#   6028: a verify started while a failed write was in flight was judged as on equal copies.
#   2222: both disks failed while the primary gave way to its peer: both copies Inconsistent.
#   11432: both disks failed, one in the survivor's flush: after the resync between the two
#             Inconsistent copies, the source stayed Inconsistent, connected, for good.
#   4501: a primary gave way to its peer after a failed flush, but its metadata could not be
#             written; its process crashed before the retry, its peer lost power, and it came
#             back UpToDate from the older metadata, was promoted alone and lost a write.
#   748299: the ring recorded the secondary outdated in a view of the two copies alone (the
#             witness cut off); the secondary lost power before marking its copy, came back with
#             the witness, and was promoted without the writes acknowledged meanwhile.
#   828071: a copy promoted with --force while Inconsistent wrote apart, then its disk failed;
#             facing a peer that wrote apart too it was full-synced over instead of refused as a
#             split brain.
#   846713: the secondary's disk failed a write, then the primary lost power: the model wanted
#             the primary's unflushed writes from the Inconsistent peer (documented as lost).
#   947172: a secondary promoted while its metadata write hung still held its old primary's
#             last writes; they landed after the resync to the old primary had read the blocks.
#   1068732: both disks failed, the newer copy's while it resynced the other; two Inconsistent
#             copies with different generations were refused as unrelated for good.
#   1115871: a copy that recorded its peer outdated restarted as secondary and lost power; the
#             model wanted an unflushed write only the outdated peer's cache held.
#   1142896, 1147178, 1149138: both copies crashed as primary on one generation, the one the
#             ring had recorded outdated (and which had lost unflushed writes) was the source of
#             their marked blocks because its node id was lower.
#   1185408: the secondary lost power, then the primary's failed flush dropped its cached writes
#             before it heard its link was gone; the model wanted the unflushed write both lost.
foreach(seed 1185408 1142896 1147178 1149138 1115871 828071 846713 947172 1068732 93000079 93000550 93000723 93004100 93006209 93010628 95066770 99000776 99010907
        99503303 99511675 101029428 9310518 5 13 189 328 1405 3423 6028 2222 11432 4501 748299)
  add_test(NAME volume_seed_${seed} COMMAND $<TARGET_FILE:keel> sim --volume --seed ${seed})
  set_tests_properties(volume_seed_${seed} PROPERTIES TIMEOUT 60 LABELS sim)
endforeach()
