Feature: OSS Cluster API: hash slots that move between nodes
  A database with the OSS Cluster API shows its clients the cluster itself:
  one endpoint per node, and which node serves which hash slot. When slots
  move (a rebalance, a node that joins, a node that leaves), the nodes the
  slots leave announce SMIGRATING; the keys really move, and a request in
  between is redirected (ASK, MOVED); then the nodes on both sides announce
  SMIGRATED with where each slot range went. A cluster client relaxes its
  timeouts on SMIGRATING, follows the redirects without an error reaching
  the application, updates its slot map once per move, and comes back to its
  timeouts after SMIGRATED on every connection that relaxed.

  Background:
    Given an OSS Cluster API database of 2 shards with a replica each
    And a client "app" with maintenance notifications enabled
    And steady traffic from "app"

  Scenario: CL1 half of one node's slots move to another node, and the client follows
    When half of one node's slots move to another node
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the traffic saw no errors
    And every acknowledged write is readable
    And the shards hold every moved slot's keys on the node it moved to, and none on the node it left
    And the slot map of "app" matches the cluster's

  Scenario: CL2 a new node joins the cluster and takes slots from every node
    When a new node joins the cluster and takes a share of every node's slots
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the traffic saw no errors
    And every acknowledged write is readable
    And the shards hold every moved slot's keys on the node it moved to, and none on the node it left
    And the slot map of "app" matches the cluster's

  Scenario: CL3 a node gives its slots to the others and leaves
    When a node gives its slots to the others and leaves the cluster
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the traffic saw no errors
    And every acknowledged write is readable
    And the shards hold every moved slot's keys on the node it moved to, and none on the node it left
    And the slot map of "app" matches the cluster's
    And "app" let go of its connections to the node that left, before the node stopped

  Scenario: CL4 a node hands its slots to a new node and leaves
    When a node hands all its slots to a new node and leaves the cluster
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the traffic saw no errors
    And every acknowledged write is readable
    And the shards hold every moved slot's keys on the node it moved to, and none on the node it left
    And the slot map of "app" matches the cluster's
    And "app" let go of its connections to the node that left, before the node stopped

  Scenario: CL5 a move announced by both nodes updates the slot map once
    When half of one node's slots move to another node
    Then "app" applied each slot move once, though several nodes announced it
    And the slot map of "app" matches the cluster's

  Scenario: CL6 a connection opened while slots move receives the open SMIGRATING
    When slots start moving between nodes with a lead of 2s
    Then a raw connection that opts in now receives SMIGRATING before its +OK
    When the slots have moved
    Then the traffic saw no errors

  Scenario: CL7 a sharded channel's subscriber follows its slot to another node
    The node a sharded channel's slot leaves unsubscribes its subscribers
    (an unsolicited SUNSUBSCRIBE); the client subscribes again on the node
    that serves the slot now. A message published in between reaches nobody
    (the server says so); every other arrives, in order.

    Given a client "listener" with maintenance notifications enabled
    And "listener" subscribes to a sharded channel of hash slot 5000
    And "app" publishes steadily to the channel "listener" subscribed to
    When half of one node's slots move to another node
    Then "listener" received every message "app" published while subscribed, and kept receiving after the move

  Scenario: CL8 every connection relaxed for a move comes back after SMIGRATED
    When half of one node's slots move to another node
    Then every connection of "app" that received SMIGRATING stayed relaxed until SMIGRATED, then came back
    And the traffic saw no errors

  Scenario: CL9 every primary fails over under traffic: each shard's slots move to its replica's node, and the client follows
    A cluster's failover promotes each primary's replica (CLUSTER FAILOVER)
    on another node: every node gives its slots to one node and takes
    another's, announced as any slot move. The old primaries stop claiming
    their slots before the move is announced done, so no two nodes answer
    for a slot at once. Every shard has a replica, those of the nodes CL2
    and CL4 add too.

    When the database fails over
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the traffic saw no errors
    And every acknowledged write is readable
    And the shards hold every moved slot's keys on the node it moved to, and none on the node it left
    And the slot map of "app" matches the cluster's

  Scenario: CL10 negative control: a cluster client that ignores SMIGRATED and learns each moved slot only from its own MOVED keeps being redirected
    Notifications disabled, and no re-read of the slot map after a MOVED:
    only MOVED, one slot at a time, tells it where the slots went, so the
    server redirects its requests long after SMIGRATED announced the new
    owners. (A client that re-reads the whole map after its first MOVED
    learns it before SMIGRATED here: the slots change owners in batches,
    each redirected, before SMIGRATED goes out.)

    Given a client "naive" with maintenance notifications disabled and these settings:
      | slot map refresh on MOVED | off |
    And steady traffic from "naive"
    When half of one node's slots move to another node
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the claim fails that "naive" needed no MOVED once SMIGRATED said where the slots went, saying "with MOVED after"

  Scenario: CL11 negative control: a cluster client that ignores SMIGRATED keeps being redirected after every primary fails over
    CL9's failover, for a client with notifications disabled that learns
    each slot's new node only from its own MOVED: the server redirects its
    requests long after SMIGRATED said where the slots went.

    Given a client "naive" with maintenance notifications disabled and these settings:
      | slot map refresh on MOVED | off |
    And steady traffic from "naive"
    When the database fails over
    Then "app" needed no MOVED once SMIGRATED said where the slots went
    And the claim fails that "naive" needed no MOVED once SMIGRATED said where the slots went, saying "with MOVED after"

  Scenario: CL12 a sharded channel's subscriber keeps receiving when every primary fails over
    Each shard's replica, on another node, takes over its slots, and a node
    may leave the slot map. The subscription goes where its slot went: the
    client subscribes again there when a node unsubscribes it, and before it
    closes its connection to a node that no longer serves a slot. A message
    published in between may reach nobody (the server says so); every other
    arrives, in order.

    Given a client "listener" with maintenance notifications enabled
    And "listener" subscribes to a sharded channel of hash slot 5000
    And "app" publishes steadily to the channel "listener" subscribed to
    When the database fails over
    Then "listener" received every message "app" published while subscribed, and kept receiving after the move

  @emulator
  Scenario: CL13 negative control: a sharded subscriber that does not subscribe again loses its channel when every primary fails over
    CL12's failover, for a subscriber that neither follows a node's
    unsubscribe nor takes its subscriptions along when a node leaves its
    slot map: nothing published after the move reaches it. On a database of
    its own, the node the subscriber's slot leaves is the one that leaves
    the slot map; on a database other scenarios failed over before, that
    node may stay and keep the subscription alive (a client then needs to do
    nothing, and the claim rightly holds), so the control runs on the
    emulator only.

    Given a client "listener" with maintenance notifications enabled and these settings:
      | resubscribe | off |
    And "listener" subscribes to a sharded channel of hash slot 5000
    And "app" publishes steadily to the channel "listener" subscribed to
    When the database fails over
    Then the claim fails that "listener" received every message "app" published while subscribed, and kept receiving after the move, saying "did not resume"

  @emulator
  Scenario: CL14 one node's SMIGRATED ends the relaxation of those slots on every node's connection, and no other
    The nodes announce a move each on their own connections, and a node may
    say SMIGRATED to its connections alone. The client ends every window an
    SMIGRATING of the slots SMIGRATED names opened, whichever node's
    connection it opened on, and keeps open the windows of slots still on
    the move. Decided by requests: with every reply delayed beyond the
    configured timeout, a request on each connection is answered while a
    window is open, and times out once none is (the traffic stops first,
    so that only the probes are delayed).

    When the emulator sends SMIGRATING of slots 0-99 from every node
    And the emulator sends SMIGRATING of slots 200-299 from every node
    And the emulator sends SMIGRATED of slots 0-99 from the node that holds them, to that node's connections only
    Then the traffic saw no errors
    And "app" is still relaxed 1 s later
    When the emulator sends SMIGRATED of slots 200-299 from the node that holds them, to that node's connections only
    Then the timeouts of "app" are back to their configured values
