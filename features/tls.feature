Feature: TLS configurations
  Production Enterprise databases very often speak TLS only. Whatever a client's
  TLS settings, maintenance must go through without an error: the client keeps
  its TLS settings on every new connection, a handoff included, and when it
  verifies the server it checks the name MOVING gave. A setting the server does
  not accept is refused at once, with an error that says what to change.

  Background:
    Given a standalone database

  Scenario: TL1 without TLS, a failover, a migration and a rebind go through without an error
    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once
    And every connection of "app" is unencrypted

  Scenario: TL2 TLS without verification trusts no CA and still goes through maintenance
    Given the database uses TLS with certificates from the cluster's CA
    And a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | trusted CA       | the system's |
      | TLS verification | off          |
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once
    And every connection of "app" uses TLS 1.3

  Scenario: TL3 TLS verified against the cluster's CA, the name MOVING gave included
    Given the database uses TLS with certificates from the cluster's CA
    And a client "app" with 2 connections and maintenance notifications enabled and endpoint type internal-fqdn
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then "app" receives MOVING with a host name
    And every connection of "app" now uses the endpoint MOVING named
    And the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once
    And every connection of "app" uses TLS 1.3

  Scenario: TL4 a database that accepts TLS 1.3 only, and a client capped at TLS 1.2 refused
    Given the database accepts TLS 1.3 only
    And a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | TLS versions | 1.3 only |
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once
    And every connection of "app" uses TLS 1.3
    When a client "old" with maintenance notifications enabled connects with these settings:
      | TLS versions | 1.2 only |
    Then connecting "old" fails with an error that says "share no TLS version (the client speaks TLS 1.2 only)"

  Scenario: TL5 mutual TLS: the cluster's client certificate on every connection, and none refused
    Given the database requires client certificates
    And a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | client certificate | the cluster's |
    And steady traffic from "app"
    When the database fails over
    And the database's shard migrates to another node
    And the database endpoint is rebound to another node
    Then the traffic saw no errors
    And every acknowledged write is readable
    And every connection of "app" hands off exactly once
    And every connection of "app" uses TLS 1.3
    When a client "anonymous" with maintenance notifications enabled connects with these settings:
      | client certificate | none |
    Then connecting "anonymous" fails with an error that says "requires a client certificate"

  Scenario: TL6 a server whose certificate another CA signed is refused, and the error names the certificate
    Given the database uses TLS with certificates from the cluster's CA
    When a client "app" with maintenance notifications enabled connects with these settings:
      | trusted CA | another CA |
    Then connecting "app" fails with an error that says "certificate"
    And connecting "app" fails with an error that says "is not signed by a CA the client trusts"
    And connecting "app" failed within 1 s after a single connection attempt
