//! The control plane: inventory of ENIs, flow logs on ENIs, vSwitches and VPCs, and the capture sets hosts watch.
