Feature: The discovery service
  Every Redis Enterprise node answers the Sentinel protocol: a client
  configured for Sentinel asks any node where its database is
  (`SENTINEL get-master-addr-by-name`), and hears `+switch-master` when the
  endpoint moves to another node. A client that finds its database this way
  needs no MOVING: it moves its connections when the discovery service says
  so, before the old node drops them.

  Background:
    Given a standalone database

  @emulator
  Scenario: DS1 a client that finds the database through the discovery service follows +switch-master: the endpoint moves without MOVING, and its connections move before the old node drops them
    Given a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | discovery service | on |
    And steady traffic from "app"
    When the database endpoint is rebound to another node without MOVING
    Then "app" received no MOVING
    And the server cut off no connection of "app"
    And the traffic saw no errors
    And every acknowledged write is readable

  @emulator
  Scenario: DS2 negative control: a client that found the database through the discovery service but ignores +switch-master is cut off when the grace ends
    Given a client "naive" with 2 connections and maintenance notifications enabled and these settings:
      | discovery service | on  |
      | +switch-master    | off |
    And steady traffic from "naive"
    When the database endpoint is rebound to another node without MOVING
    Then the claim fails that the server cut off no connection of "naive", saying "the server cut off 2 connection(s)"
